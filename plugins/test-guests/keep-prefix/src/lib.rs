//! Keeps records whose thread id starts with `prefix`, drops the rest, and rejects
//! threads named in `reject`. Reads nothing but the keys.

use ckpt_migrate_plugin::serde_json::Value;
use ckpt_migrate_plugin::{Context, Filter, Info, Needs, Record, Verdict};

struct KeepPrefix {
    prefix: String,
    reject: Vec<String>,
}

impl Filter for KeepPrefix {
    fn info() -> Info {
        Info::new("keep_prefix", "0.1.0", Needs::empty())
    }

    fn new(config: Value) -> Result<Self, String> {
        let prefix = config
            .get("prefix")
            .and_then(Value::as_str)
            .ok_or("config needs a `prefix`")?;
        let reject = config
            .get("reject")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            prefix: prefix.to_owned(),
            reject,
        })
    }

    fn filter(&mut self, _ctx: &Context, record: &Record) -> Verdict {
        if self.reject.contains(&record.thread_id) {
            Verdict::Reject(format!("thread {} is on the reject list", record.thread_id))
        } else if record.thread_id.starts_with(&self.prefix) {
            Verdict::Keep
        } else {
            Verdict::Drop
        }
    }
}

ckpt_migrate_plugin::export_filter!(KeepPrefix);
