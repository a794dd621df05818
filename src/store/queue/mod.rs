//! Every statement on `webhook_queue`, one file per step of an entry's life:
//!
//! | step | file | statement |
//! | --- | --- | --- |
//! | submit | [`submit`] | [`submit::insert_new`], [`submit::find_by_keys`] |
//! | claim | [`claim`] | [`claim::claim`]; [`claim::next_due`], when the next claim can succeed |
//! | outcome write | [`outcome`] | [`outcome::record_attempts`] |
//! | hand-back | [`release`] | [`release::release`] |
//! | new cycle (retry, redrive) | [`cycle`] | [`cycle::restart`], and which rows a redrive takes |
//! | listing | [`listing`] | [`listing::find`], [`listing::list`], the filter listing and redrive share |
//! | cancel | [`cancel`] | [`cancel::cancel`] |
//! | money order | [`order`] | [`order::release_waiting`], a debit released by hand; [`order::recheck`] and [`order::sweep`] |
//! | retention | [`retention`] | [`retention::delete_batch`] and the pruning lock |
//!
//! The statistics counters are written in SQL only: by the functions of
//! sql/rules/02_counters.sql (`webhook_counter_shard`, `webhook_*_add`), which the count triggers, [`submit::insert_new`]
//! and [`outcome::record_attempts`] call, and `store::throughput` for the rows settled per
//! second; `store::stats` reads them.
//!
//! Money order (docs/api.md, "Money order") lives in sql/rules/06_money_order.sql: the insert asks
//! `webhook_money_order_verdicts` which debits wait, the outcome write leases the debit of a
//! credit it completes, and the queue's UPDATE and DELETE triggers release or cancel the others
//! when their credit completes, is cancelled or is removed. [`order::recheck`], after a debit's
//! insert, settles one whose credit completed unseen while the insert ran.
//!
//! Every write after the claim is fenced on `(worker_id, locked_at)`: a worker whose lease
//! expired and was taken over by another changes nothing. Only a processing row has a
//! `locked_at` (a CHECK constraint), so the fence needs no status test.
//! The writes reach their rows only through the ids they hold (`q.id = ANY(ids)`): a plan
//! that can do nothing else stays bounded by the batch, whatever the planner believes about
//! the table's size or its statuses when it makes the prepared statement's generic plan.

pub mod cancel;
pub mod claim;
pub mod cycle;
pub mod listing;
pub mod order;
pub mod outcome;
pub mod release;
pub mod retention;
pub mod submit;
