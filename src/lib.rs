//! webhookd: internal money events in, partner postbacks out, never lost.

pub mod api;
pub mod application;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error_chain;
pub mod logging;
pub mod probe;
pub mod sealing;
pub mod sender;
pub mod startup;
pub mod store;
