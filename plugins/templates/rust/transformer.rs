//! {{name}}: a ckpt-migrate transformer in Rust.
//!
//! It stamps each checkpoint's metadata with `{"team": <config team>}`. Change
//! `transform` to do what you need; see README.md to build and try it.

use ckpt_migrate_plugin::serde_json::Value;
use ckpt_migrate_plugin::{Context, Info, Needs, Outcome, Record, Transformer, log};

struct Plugin {
    team: String,
}

impl Transformer for Plugin {
    fn info() -> Info {
        Info::new("{{name}}", env!("CARGO_PKG_VERSION"), Needs::METADATA)
    }

    /// `config:` from the migration's YAML.
    fn new(config: Value) -> Result<Self, String> {
        let team = config["team"].as_str().unwrap_or("unknown").to_owned();
        log::info(&format!("tagging with team {team:?}"));
        Ok(Plugin { team })
    }

    /// `Outcome::Keep`, `Drop`, `Reject(why)` or `Patch { ts, metadata }`.
    fn transform(&mut self, _ctx: &Context, record: Record) -> Outcome {
        let Some(mut metadata) = record.metadata else {
            return Outcome::Keep;
        };
        metadata.insert("team".into(), self.team.clone().into());
        Outcome::metadata(metadata)
    }
}

ckpt_migrate_plugin::export_transformer!(Plugin);
