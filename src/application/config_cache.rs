//! The API's copies of partner configs, so that a submit batch costs one statement, not two.
//!
//! A copy is never trusted on its own. Each carries the version it was read at, and the insert
//! that uses it checks, in the same statement, that the config is still at that version
//! (`submit::insert_new`); a stale copy fails the insert, which then changed nothing, and the
//! batch is built again from a fresh read. A refusal — unknown or inactive config, no URL for
//! the event type, a parameter the template lacks — is only ever decided on a fresh read, since
//! no insert checks it. So a config changed through another API process, or by hand, applies
//! to the very next submit, as it did when every batch read its configs.
//!
//! Only configs that exist are kept; there are as many as the operator created.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::configs::Versioned;

#[derive(Default)]
pub struct ConfigCache {
    copies: Mutex<HashMap<i64, Versioned>>,
}

impl ConfigCache {
    /// Copies of every config in `ids`, or `None` when one of them has none.
    pub fn copies(&self, ids: &[i64]) -> Option<HashMap<i64, Versioned>> {
        let copies = self.copies.lock().expect("config cache lock");
        ids.iter()
            .map(|id| copies.get(id).map(|c| (*id, c.clone())))
            .collect()
    }

    /// Keeps fresh reads; configs in `ids` that were not found are forgotten.
    pub fn store(&self, ids: &[i64], fresh: &HashMap<i64, Versioned>) {
        let mut copies = self.copies.lock().expect("config cache lock");
        for id in ids {
            match fresh.get(id) {
                Some(config) => copies.insert(*id, config.clone()),
                None => copies.remove(id),
            };
        }
    }
}
