//! `add_metadata`: stamps every checkpoint's metadata with where and when it was
//! migrated — `migrated_at` (the run's start, RFC 3339 UTC), `migration_run_id`,
//! `migration_source` — plus the static `fields` of its config. An existing key is
//! kept unless the config says `overwrite: true`.
//!
//! config: `{ "fields": { "team": "support" }, "overwrite": false }`

use ckpt_migrate_plugin::serde_json::{Map, Value};
use ckpt_migrate_plugin::{Context, Info, Needs, Outcome, Record, Transformer};

struct AddMetadata {
    fields: Map<String, Value>,
    overwrite: bool,
}

impl Transformer for AddMetadata {
    fn info() -> Info {
        Info::new("add_metadata", env!("CARGO_PKG_VERSION"), Needs::METADATA)
    }

    fn new(config: Value) -> Result<Self, String> {
        let fields = match config.get("fields") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err("`fields` must be a map of key: value".into()),
        };
        let overwrite = match config.get("overwrite") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("`overwrite` must be true or false".into()),
        };
        Ok(Self { fields, overwrite })
    }

    fn transform(&mut self, ctx: &Context, record: Record) -> Outcome {
        let mut metadata = record.metadata.unwrap_or_default();
        let stamps = [
            ("migrated_at", Value::from(ctx.run_started_at.clone())),
            ("migration_run_id", Value::from(ctx.run_id.clone())),
            ("migration_source", Value::from(ctx.source_kind.clone())),
        ];
        let added = stamps
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(self.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (key, value) in added {
            if self.overwrite || !metadata.contains_key(&key) {
                metadata.insert(key, value);
            }
        }
        Outcome::metadata(metadata)
    }
}

ckpt_migrate_plugin::export_transformer!(AddMetadata);
