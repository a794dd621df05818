//! LISTEN for new rows on a connection of its own. Reconnecting, and waking workers, is the
//! engine's listener service (`application::engine::listener`).

use std::time::Duration;

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;

use super::setup_error::DbSetupError;
use super::{connect, ping, NEW_ROWS_CHANNEL};

/// How often an otherwise quiet subscription checks its connection is alive.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Longest a keepalive query may take before the connection counts as lost.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    Connect(#[from] DbSetupError),
    #[error("LISTEN connection failed")]
    Database(#[from] diesel::result::Error),
    #[error("the LISTEN connection did not answer its keepalive within {0:?}")]
    KeepaliveTimeout(Duration),
    #[error("the notification stream ended")]
    StreamEnded,
}

/// A connection that listens on the new-rows channel.
pub struct Subscription {
    conn: AsyncPgConnection,
}

impl Subscription {
    pub async fn open(database_url: &str) -> Result<Self, ListenError> {
        let mut conn = connect(database_url).await?;
        conn.batch_execute(&format!("LISTEN {NEW_ROWS_CHANNEL}"))
            .await?;
        Ok(Self { conn })
    }

    /// Waits for the next announcement of new rows. While none comes, checks every
    /// [`KEEPALIVE`] that the connection still answers, so that a connection a firewall
    /// dropped silently is noticed.
    pub async fn next(&mut self) -> Result<(), ListenError> {
        loop {
            {
                let mut notifications = std::pin::pin!(self.conn.notifications_stream());
                tokio::select! {
                    next = notifications.next() => return match next {
                        Some(Ok(_)) => Ok(()),
                        Some(Err(e)) => Err(e.into()),
                        None => Err(ListenError::StreamEnded),
                    },
                    _ = tokio::time::sleep(KEEPALIVE) => {}
                }
            }
            tokio::time::timeout(KEEPALIVE_TIMEOUT, ping(&mut self.conn))
                .await
                .map_err(|_| ListenError::KeepaliveTimeout(KEEPALIVE_TIMEOUT))??;
        }
    }
}
