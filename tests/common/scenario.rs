//! The start most delivery tests share: a receiver on loopback, the app, and partners whose
//! calls go to that receiver.

use super::receiver::Receiver;
use super::{spawn, Options, TestApp};

/// A receiver, then the app started with `options`.
pub async fn with_receiver(options: Options) -> (Receiver, TestApp) {
    let receiver = Receiver::start().await;
    let app = spawn(options).await;
    (receiver, app)
}

/// A receiver, then the app with workers and `settings` ([`Options::workers`]).
pub async fn delivering(settings: &str) -> (Receiver, TestApp) {
    with_receiver(Options::workers(settings)).await
}

/// Creates a config `name` whose postbacks go to the path `postback` on `receiver` and
/// chargebacks to the path `chargeback`; its id.
pub async fn partner_on(
    app: &TestApp,
    receiver: &Receiver,
    name: &str,
    postback: &str,
    chargeback: &str,
) -> i64 {
    app.config(name, &receiver.url(postback), &receiver.url(chargeback))
        .await
}
