//! Why the engine could not do its work. Each variant keeps its cause, so that the log line
//! where the error ends (`error_chain::describe`) names the root of it.

use crate::application::AppError;
use crate::store::{DbSetupError, PoolError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no database connection from the pool")]
    Pool(#[from] PoolError),
    #[error("database statement failed")]
    Database(#[from] diesel::result::Error),
    #[error("cannot open a database connection")]
    Connect(#[from] DbSetupError),
    #[error("cannot build the HTTP client")]
    HttpClient(#[from] reqwest::Error),
    #[error(transparent)]
    Application(#[from] AppError),
    #[error("the HTTP server failed")]
    Server(#[from] std::io::Error),
    #[error("the {task} task panicked")]
    Panicked {
        task: &'static str,
        #[source]
        cause: tokio::task::JoinError,
    },
}
