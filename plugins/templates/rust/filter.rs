//! {{name}}: a ckpt-migrate filter in Rust.
//!
//! It keeps the threads whose id starts with the config's `prefix` and drops the
//! others. Change `filter` to do what you need; see README.md to build and try it.

use ckpt_migrate_plugin::serde_json::Value;
use ckpt_migrate_plugin::{Context, Filter, Info, Needs, Record, Verdict};

struct Plugin {
    prefix: String,
}

impl Filter for Plugin {
    fn info() -> Info {
        Info::new("{{name}}", env!("CARGO_PKG_VERSION"), Needs::empty())
    }

    /// `config:` from the migration's YAML.
    fn new(config: Value) -> Result<Self, String> {
        let prefix = config["prefix"].as_str().unwrap_or("").to_owned();
        Ok(Plugin { prefix })
    }

    /// `Verdict::Keep`, `Drop` or `Reject(why)`.
    fn filter(&mut self, _ctx: &Context, record: &Record) -> Verdict {
        if record.thread_id.starts_with(&self.prefix) {
            Verdict::Keep
        } else {
            Verdict::Drop
        }
    }
}

ckpt_migrate_plugin::export_filter!(Plugin);
