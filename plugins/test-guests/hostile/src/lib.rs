//! Misbehaves as its config says, on the batch whose index is `batch` (default 0), to
//! test the sandbox: `mode` = `loop`, `alloc`, `read-file` (`path`), `read-env`
//! (`var`), `panic`, `error`, `reject-odd` (rejects every other record), `drop-all`.
//! Every other batch passes through.

use ckpt_migrate_plugin::serde_json::Value;
use ckpt_migrate_plugin::{Context, Info, Needs, Outcome, Record, Transformer};

struct Hostile {
    mode: String,
    batch: u64,
    path: String,
    var: String,
    seen: u64,
}

impl Transformer for Hostile {
    fn info() -> Info {
        Info::new("hostile", "0.1.0", Needs::METADATA)
    }

    fn new(config: Value) -> Result<Self, String> {
        let text = |k: &str, d: &str| {
            config
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or(d)
                .to_owned()
        };
        Ok(Self {
            mode: text("mode", "none"),
            batch: config.get("batch").and_then(Value::as_u64).unwrap_or(0),
            path: text("path", "/etc/passwd"),
            var: text("var", "HOME"),
            seen: 0,
        })
    }

    fn transform(&mut self, ctx: &Context, record: Record) -> Outcome {
        self.seen += 1;
        if ctx.batch_index != self.batch {
            return Outcome::Keep;
        }
        match self.mode.as_str() {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1u8; 64 * 1024 * 1024]);
                    std::hint::black_box(&hog);
                }
            }
            // Success shows up in the metadata (so a test sees a leak); failure is a
            // rejection carrying the error the sandbox gave.
            "read-file" => match std::fs::read_to_string(&self.path) {
                Ok(text) => {
                    let mut metadata = record.metadata.unwrap_or_default();
                    metadata.insert("file".into(), Value::from(text.trim()));
                    Outcome::metadata(metadata)
                }
                Err(e) => Outcome::Reject(format!("could not read {}: {e}", self.path)),
            },
            "read-env" => match std::env::var(&self.var) {
                Ok(v) => {
                    let mut metadata = record.metadata.unwrap_or_default();
                    metadata.insert("env".into(), Value::from(v));
                    Outcome::metadata(metadata)
                }
                Err(e) => Outcome::Reject(format!(
                    "could not read the environment variable {}: {e}",
                    self.var
                )),
            },
            "panic" => panic!("this plugin panics on purpose"),
            "reject-odd" if self.seen % 2 == 1 => Outcome::Reject("odd record".into()),
            "drop-all" => Outcome::Drop,
            _ => Outcome::Keep,
        }
    }
}

ckpt_migrate_plugin::export_transformer!(Hostile);
