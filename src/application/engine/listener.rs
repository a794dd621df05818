//! The listener service: turns announcements of new rows into wake-ups of idle workers, and
//! keeps its LISTEN connection up.

use std::sync::Arc;
use std::time::Duration;

use slog::{debug, info, warn, Logger};
use tokio::sync::Notify;

use super::error::EngineError;
use super::service::{Round, Service};
use crate::error_chain::describe;
use crate::store::listener::Subscription;
use crate::store::NEW_ROWS_CHANNEL;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Listener {
    database_url: String,
    wake: Arc<Notify>,
    subscription: Option<Subscription>,
    backoff: Duration,
    log: Logger,
}

impl Listener {
    pub fn new(database_url: String, wake: Arc<Notify>, log: Logger) -> Self {
        Self {
            database_url,
            wake,
            subscription: None,
            backoff: FIRST_BACKOFF,
            log,
        }
    }

    /// How long to rest before subscribing again; doubles each time, up to [`MAX_BACKOFF`].
    fn back_off(&mut self) -> Duration {
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        pause
    }
}

impl Service for Listener {
    const NAME: &'static str = "listener";

    /// Subscribes when not subscribed, else waits for one announcement and wakes one idle
    /// worker. Connection trouble is never fatal: the round rests, then subscribes again.
    async fn run_once(&mut self) -> Result<Round, EngineError> {
        let Some(subscription) = self.subscription.as_mut() else {
            return match Subscription::open(&self.database_url).await {
                Ok(subscription) => {
                    info!(self.log, "listening for new rows"; "channel" => NEW_ROWS_CHANNEL);
                    self.subscription = Some(subscription);
                    self.backoff = FIRST_BACKOFF;
                    // Rows announced while no one listened would otherwise wait for a poll.
                    self.wake.notify_one();
                    Ok(Round::Again)
                }
                Err(e) => {
                    let pause = self.back_off();
                    warn!(self.log, "cannot LISTEN; retrying"; "error" => describe(&e),
                        "retry_in_ms" => pause.as_millis() as u64);
                    Ok(Round::Rest(pause))
                }
            };
        };
        match subscription.next().await {
            Ok(()) => {
                debug!(self.log, "new rows announced");
                self.wake.notify_one();
                Ok(Round::Again)
            }
            Err(e) => {
                warn!(self.log, "listener connection lost; reconnecting"; "error" => describe(&e));
                self.subscription = None;
                Ok(Round::Rest(self.back_off()))
            }
        }
    }
}
