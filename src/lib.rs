//! webhookd: internal money events in, partner postbacks out, never lost.

pub mod application;
pub mod cli;
pub mod config;
pub mod domain;
pub mod infra;
pub mod logging;
