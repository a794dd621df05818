//! LISTEN for new rows on a dedicated connection that reconnects by itself.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use slog::{debug, info, warn, Logger};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{connect, ping, NEW_ROWS_CHANNEL};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

/// How often an otherwise quiet listener checks its connection is alive.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Wakes one idle worker for every notification until `stop` is cancelled. A lost connection
/// is re-established with backoff, and workers are woken after each reconnect, since
/// notifications sent while it was down are gone.
pub async fn run(database_url: String, wake: Arc<Notify>, stop: CancellationToken, log: Logger) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        match subscribe(&database_url).await {
            Ok(mut conn) => {
                info!(log, "listening for new rows"; "channel" => NEW_ROWS_CHANNEL);
                backoff = Duration::from_millis(100);
                wake.notify_one();
                if let Err(e) = pump(&mut conn, &wake, &stop, &log).await {
                    warn!(log, "listener connection lost; reconnecting"; "error" => %e);
                }
            }
            Err(e) => {
                warn!(log, "cannot LISTEN; retrying"; "error" => %e, "retry_in_ms" => backoff.as_millis() as u64);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe(database_url: &str) -> Result<AsyncPgConnection, String> {
    let mut conn = connect(database_url).await.map_err(|e| e.to_string())?;
    conn.batch_execute(&format!("LISTEN {NEW_ROWS_CHANNEL}"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

async fn pump(
    conn: &mut AsyncPgConnection,
    wake: &Notify,
    stop: &CancellationToken,
    log: &Logger,
) -> Result<(), String> {
    loop {
        let quiet = {
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                next = notifications.next() => match next {
                    Some(Ok(_)) => {
                        debug!(log, "new rows announced");
                        wake.notify_one();
                        false
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("notification stream ended".into()),
                },
                _ = tokio::time::sleep(KEEPALIVE) => true,
            }
        };
        if quiet {
            tokio::time::timeout(Duration::from_secs(5), ping(conn))
                .await
                .map_err(|_| "keepalive timed out".to_string())?
                .map_err(|e| e.to_string())?;
        }
    }
}
