//! One pass of the pruner, run from a test with the arguments a `work` process gives it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use webhookd::application::retention::{self, Pass};
use webhookd::config::RetentionSettings;

use super::TestApp;

/// Retention that removes completed rows older than `completed` and failed rows older than
/// `failed` (none when `None`).
pub fn settings(completed: Option<Duration>, failed: Option<Duration>) -> RetentionSettings {
    RetentionSettings {
        completed,
        failed,
        interval: Duration::from_secs(60),
    }
}

pub async fn prune(app: &TestApp, settings: &RetentionSettings) -> Pass {
    retention::prune_once(
        &app.db.url,
        settings,
        Duration::from_secs(5),
        Some(Duration::from_secs(60)),
        &CancellationToken::new(),
        |_| {},
    )
    .await
    .expect("pruning runs")
}
