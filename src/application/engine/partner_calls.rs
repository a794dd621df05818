//! How this process calls each partner, kept per config version: a config is read (and its
//! secrets opened, its own client built) when a claimed row names a version not kept yet, so a
//! changed config applies from the next row claimed after the change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use slog::{warn, Logger};

use crate::sealing::Keys;
use crate::sender::{PartnerCall, Sender};
use crate::store::{configs, DbPool};

pub(super) struct PartnerCalls {
    keys: Keys,
    kept: Mutex<HashMap<i64, Arc<PartnerCall>>>,
}

impl PartnerCalls {
    pub(super) fn new(keys: Keys) -> Self {
        Self {
            keys,
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// How to call partner `config_id` at `version` (the version its row was claimed with).
    /// `Err` when its config could not be read now (the database is out of reach): nothing is
    /// kept, and the caller hands the row back uncalled rather than spend an attempt on it.
    pub(super) async fn get(
        &self,
        pool: &DbPool,
        sender: &Sender,
        config_id: i64,
        version: i64,
        log: &Logger,
    ) -> Result<Arc<PartnerCall>, String> {
        if let Some(kept) = self.kept(config_id).filter(|k| k.version == version) {
            return Ok(kept);
        }
        let read = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            configs::find_for_calls(&mut conn, config_id)
                .await
                .map_err(|e| e.to_string())
        };
        let partner = match read.await? {
            Some((row, signing, version)) => match row.call_settings() {
                Ok(settings) => sender.partner(version, &settings, &signing, &self.keys),
                Err(e) => PartnerCall::unusable(version, e.to_string()),
            },
            // A config is never deleted while rows name it; this is a row written by hand.
            None => PartnerCall::unusable(version, format!("config {config_id} does not exist")),
        };
        if let Some(why) = partner.unusable_reason() {
            warn!(log, "a partner's config cannot be used; its calls fail until it is fixed";
                "config_id" => config_id, "reason" => why);
        }
        let partner = Arc::new(partner);
        self.kept
            .lock()
            .expect("partner calls lock")
            .insert(config_id, partner.clone());
        Ok(partner)
    }

    fn kept(&self, config_id: i64) -> Option<Arc<PartnerCall>> {
        self.kept
            .lock()
            .expect("partner calls lock")
            .get(&config_id)
            .cloned()
    }
}
