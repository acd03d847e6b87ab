//! Misbehaves as its config says, on the batch whose index is `batch` (default 0), to
//! test the sandbox. Every other batch passes through. `mode`:
//! - `loop`: computes forever; `alloc`: allocates 64 MiB blocks forever.
//! - `sleep`: sleeps `seconds` inside a host call (a WASI clock poll), on every record;
//!   `sleep-forever`: sleeps without end.
//! - `read-file` (`path`), `read-env` (`var`): tries to escape the sandbox.
//! - `panic`: traps.
//! - `error`: the call returns an error of `bytes` bytes (default 30), once.
//! - `error-then-check`: returns an error on the batch, and rejects every record of
//!   a later batch if it finds itself in the same instance (it must be a fresh one).
//! - `reject-huge`: rejects every record with a reason of `bytes` bytes.
//! - `log-flood`: writes `count` log messages of `bytes` bytes each, once.
//! - `log-inject`: writes one log message with newlines that imitate host log lines.
//! - `bad-ts`: patches `ts` to text LangGraph cannot read.
//! - `reject-odd` (rejects every other record), `drop-all`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use ckpt_migrate_plugin::serde_json::Value;
use ckpt_migrate_plugin::transformer_bindings::ckpt_migrate::plugin::types::{
    CheckpointRecord, PluginInfo, RunContext, TransformOutcome,
};
use ckpt_migrate_plugin::transformer_bindings::exports::ckpt_migrate::plugin::transformer::Guest;
use ckpt_migrate_plugin::{Context, Info, Needs, Outcome, Record, Transformer, log};

/// The forged text `log-inject` writes: it looks like the host's own last lines.
pub const FORGED: &str =
    "done: forged -> forged\n  read 0  written 0  filtered 0  failed 0\nERROR forged line";

static CONFIG: OnceLock<Value> = OnceLock::new();
/// Set by `error-then-check` before it fails: seen again only if the instance is reused.
static FAILED_HERE: AtomicBool = AtomicBool::new(false);

fn text(config: &Value, key: &str, default: &str) -> String {
    config
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_owned()
}

fn number(config: &Value, key: &str, default: u64) -> u64 {
    config.get(key).and_then(Value::as_u64).unwrap_or(default)
}

struct Hostile {
    mode: String,
    batch: u64,
    path: String,
    var: String,
    seconds: u64,
    bytes: usize,
    count: u64,
    seen: u64,
    flooded: bool,
}

impl Transformer for Hostile {
    fn info() -> Info {
        Info::new("hostile", "0.1.0", Needs::METADATA)
    }

    fn new(config: Value) -> Result<Self, String> {
        Ok(Self {
            mode: text(&config, "mode", "none"),
            batch: number(&config, "batch", 0),
            path: text(&config, "path", "/etc/passwd"),
            var: text(&config, "var", "HOME"),
            seconds: number(&config, "seconds", 1),
            bytes: number(&config, "bytes", 30) as usize,
            count: number(&config, "count", 1),
            seen: 0,
            flooded: false,
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
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(self.seconds));
                Outcome::Keep
            }
            "sleep-forever" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            // Success shows up in the metadata (so a test sees a leak); failure is a
            // rejection carrying the error the sandbox gave. The files it probes are
            // tiny (/etc/passwd, a test file).
            #[allow(clippy::disallowed_methods)]
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
            "reject-huge" => Outcome::Reject("R".repeat(self.bytes)),
            "log-flood" => {
                // Once per call: on the batch's first record.
                if !std::mem::replace(&mut self.flooded, true) {
                    let message = "L".repeat(self.bytes);
                    for _ in 0..self.count {
                        log::info(&message);
                    }
                }
                Outcome::Keep
            }
            "log-inject" => {
                log::warn(&format!("innocent\n{FORGED}"));
                Outcome::Keep
            }
            "bad-ts" => Outcome::Patch {
                ts: Some("yesterday, around noon".into()),
                metadata: None,
            },
            "reject-odd" if self.seen % 2 == 1 => Outcome::Reject("odd record".into()),
            "drop-all" => Outcome::Drop,
            _ => Outcome::Keep,
        }
    }
}

/// The component's exports: batch-level answers (an error for the whole call) that
/// the SDK does not offer, around the SDK's per-record `Hostile`.
struct Component;

impl Guest for Component {
    fn init(config_json: String) -> Result<PluginInfo, String> {
        let config: Value =
            ckpt_migrate_plugin::serde_json::from_str(&config_json).map_err(|e| e.to_string())?;
        let _ = CONFIG.set(config);
        ckpt_migrate_plugin::__init(config_json, Hostile::new, Hostile::info())
    }

    fn transform(
        ctx: RunContext,
        records: Vec<CheckpointRecord>,
    ) -> Result<Vec<TransformOutcome>, String> {
        let config = CONFIG.get().cloned().unwrap_or(Value::Null);
        let mode = text(&config, "mode", "none");
        let on_batch = ctx.batch_index == number(&config, "batch", 0);
        match mode.as_str() {
            "error" if on_batch => {
                let bytes = number(&config, "bytes", 30) as usize;
                return Err("E".repeat(bytes));
            }
            "error-then-check" if FAILED_HERE.load(Ordering::SeqCst) => {
                return Ok(records
                    .iter()
                    .map(|_| TransformOutcome::Reject("instance reused after an error".into()))
                    .collect());
            }
            "error-then-check" if on_batch => {
                FAILED_HERE.store(true, Ordering::SeqCst);
                return Err("failing on purpose".into());
            }
            _ => {}
        }
        ckpt_migrate_plugin::__transform::<Hostile>(ctx, records)
    }
}

ckpt_migrate_plugin::transformer_bindings::__export_transformer_world!(Component);
