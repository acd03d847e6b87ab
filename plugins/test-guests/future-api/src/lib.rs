//! Implements `ckpt-migrate:plugin/transformer@0.2.0`, a version the host does not
//! speak: loading it must fail with a clear message before anything runs.

wit_bindgen::generate!({ path: "wit", world: "transformer-plugin" });

use ckpt_migrate::plugin::types::{
    CheckpointRecord, Needs, PluginInfo, RunContext, TransformOutcome,
};
use exports::ckpt_migrate::plugin::transformer::Guest;

struct Future;

impl Guest for Future {
    fn init(_config_json: String) -> Result<PluginInfo, String> {
        Ok(PluginInfo {
            name: "future".into(),
            version: "9.9.9".into(),
            needs: Needs::empty(),
        })
    }
    fn transform(
        _ctx: RunContext,
        records: Vec<CheckpointRecord>,
    ) -> Result<Vec<TransformOutcome>, String> {
        Ok(records.iter().map(|_| TransformOutcome::Keep).collect())
    }
}

export!(Future);
