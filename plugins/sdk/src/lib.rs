//! The guest SDK for ckpt-migrate plugins: implement [`Transformer`] (or [`Filter`])
//! for a type, call [`export_transformer!`] (or [`export_filter!`]), build with
//! `cargo build --release --target wasm32-wasip2`.
//!
//! ```ignore
//! use ckpt_migrate_plugin::{Context, Info, Needs, Outcome, Record, Transformer};
//!
//! struct Tag(String);
//!
//! impl Transformer for Tag {
//!     fn info() -> Info { Info::new("tag", "0.1.0", Needs::METADATA) }
//!     fn new(config: serde_json::Value) -> Result<Self, String> {
//!         Ok(Tag(config["team"].as_str().unwrap_or("unknown").to_owned()))
//!     }
//!     fn transform(&mut self, _ctx: &Context, record: Record) -> Outcome {
//!         let mut metadata = record.metadata.unwrap_or_default();
//!         metadata.insert("team".into(), self.0.clone().into());
//!         Outcome::metadata(metadata)
//!     }
//! }
//! ckpt_migrate_plugin::export_transformer!(Tag);
//! ```

use std::any::Any;
use std::cell::RefCell;

pub use serde_json;
use serde_json::{Map, Value};

#[doc(hidden)]
pub mod transformer_bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "transformer-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_transformer_world",
        default_bindings_module: "ckpt_migrate_plugin::transformer_bindings",
    });
}

#[doc(hidden)]
pub mod filter_bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "filter-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_filter_world",
        default_bindings_module: "ckpt_migrate_plugin::filter_bindings",
        with: {
            "ckpt-migrate:plugin/types@0.1.0": crate::transformer_bindings::ckpt_migrate::plugin::types,
            "ckpt-migrate:plugin/host@0.1.0": crate::transformer_bindings::ckpt_migrate::plugin::host,
        },
    });
}

use transformer_bindings::ckpt_migrate::plugin::{host, types as wit};

/// The parts of a record a plugin reads.
pub use wit::Needs;

/// What a plugin says about itself.
pub struct Info {
    pub name: String,
    pub version: String,
    pub needs: Needs,
}

impl Info {
    pub fn new(name: &str, version: &str, needs: Needs) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            needs,
        }
    }
}

/// The run a batch belongs to.
pub struct Context {
    pub run_id: String,
    /// When the run started (RFC 3339 UTC): the plugin's clock.
    pub run_started_at: String,
    pub source_kind: String,
    pub destination_kind: String,
    pub batch_index: u64,
}

/// One pending write.
pub struct Write {
    pub task_id: String,
    pub channel: String,
    pub value: Value,
}

/// One checkpoint, with the parts the plugin asked for.
pub struct Record {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub parent_checkpoint_id: Option<String>,
    pub ts: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub checkpoint: Option<Value>,
    pub pending_writes: Option<Vec<Write>>,
}

/// What to do with a record.
pub enum Outcome {
    Keep,
    Drop,
    /// Change `ts` and/or the metadata (a whole new object); `None` keeps it.
    Patch {
        ts: Option<String>,
        metadata: Option<Map<String, Value>>,
    },
    /// Send the record to the dead-letter file with this reason.
    Reject(String),
}

impl Outcome {
    /// A patch of the metadata only.
    pub fn metadata(metadata: Map<String, Value>) -> Self {
        Outcome::Patch {
            ts: None,
            metadata: Some(metadata),
        }
    }
}

/// A filter answers keep, drop or reject.
pub enum Verdict {
    Keep,
    Drop,
    Reject(String),
}

pub trait Transformer: Sized + 'static {
    fn info() -> Info;
    /// Called once with the plugin's `config:` block.
    fn new(config: Value) -> Result<Self, String>;
    fn transform(&mut self, ctx: &Context, record: Record) -> Outcome;
}

pub trait Filter: Sized + 'static {
    fn info() -> Info;
    fn new(config: Value) -> Result<Self, String>;
    fn filter(&mut self, ctx: &Context, record: &Record) -> Verdict;
}

/// Logging through the host (the plugin has no stderr of its own worth reading).
pub mod log {
    use super::host;
    pub fn debug(message: &str) {
        host::log(host::Level::Debug, message);
    }
    pub fn info(message: &str) {
        host::log(host::Level::Info, message);
    }
    pub fn warn(message: &str) {
        host::log(host::Level::Warn, message);
    }
    pub fn error(message: &str) {
        host::log(host::Level::Error, message);
    }
}

thread_local! {
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn parse_config(config_json: &str) -> Result<Value, String> {
    if config_json.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(config_json).map_err(|e| format!("config is not JSON: {e}"))
}

fn wit_info(info: Info) -> wit::PluginInfo {
    wit::PluginInfo {
        name: info.name,
        version: info.version,
        needs: info.needs,
    }
}

fn context(ctx: wit::RunContext) -> Context {
    Context {
        run_id: ctx.run_id,
        run_started_at: ctx.run_started_at,
        source_kind: ctx.source_kind,
        destination_kind: ctx.destination_kind,
        batch_index: ctx.batch_index,
    }
}

fn record(r: wit::CheckpointRecord) -> Result<Record, String> {
    let json = |text: Option<String>, what: &str| -> Result<Option<Value>, String> {
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| format!("{what} from the host is not JSON: {e}"))
        })
        .transpose()
    };
    let metadata = match json(r.metadata_json, "metadata")? {
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err("metadata from the host is not an object".into()),
        None => None,
    };
    let pending_writes = match r.pending_writes {
        Some(writes) => Some(
            writes
                .into_iter()
                .map(|w| {
                    Ok(Write {
                        task_id: w.task_id,
                        channel: w.channel,
                        value: serde_json::from_str(&w.value_json)
                            .map_err(|e| format!("write value: {e}"))?,
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
        None => None,
    };
    Ok(Record {
        thread_id: r.thread_id,
        checkpoint_ns: r.checkpoint_ns,
        checkpoint_id: r.checkpoint_id,
        parent_checkpoint_id: r.parent_checkpoint_id,
        ts: r.ts,
        metadata,
        checkpoint: json(r.checkpoint_json, "checkpoint")?,
        pending_writes,
    })
}

#[doc(hidden)]
pub fn __init<T: Any>(
    config_json: String,
    new: fn(Value) -> Result<T, String>,
    info: Info,
) -> Result<wit::PluginInfo, String> {
    let plugin = new(parse_config(&config_json)?)?;
    STATE.with(|s| *s.borrow_mut() = Some(Box::new(plugin)));
    Ok(wit_info(info))
}

fn with_state<T: Any, R>(f: impl FnOnce(&mut T) -> R) -> Result<R, String> {
    STATE.with(|s| {
        let mut state = s.borrow_mut();
        let plugin = state
            .as_mut()
            .and_then(|b| b.downcast_mut::<T>())
            .ok_or("the plugin was not initialized")?;
        Ok(f(plugin))
    })
}

#[doc(hidden)]
pub fn __transform<T: Transformer>(
    ctx: wit::RunContext,
    records: Vec<wit::CheckpointRecord>,
) -> Result<Vec<wit::TransformOutcome>, String> {
    let ctx = context(ctx);
    with_state::<T, _>(|plugin| {
        records
            .into_iter()
            .map(|r| match record(r) {
                Err(e) => wit::TransformOutcome::Reject(e),
                Ok(r) => match plugin.transform(&ctx, r) {
                    Outcome::Keep => wit::TransformOutcome::Keep,
                    Outcome::Drop => wit::TransformOutcome::Drop,
                    Outcome::Reject(reason) => wit::TransformOutcome::Reject(reason),
                    // `serde_json::to_string` writes into one buffer; `Value`'s
                    // `Display` went through `fmt` for every token, which was most of
                    // a patch's serializing (measured in a profile of add_metadata).
                    Outcome::Patch { ts, metadata } => {
                        match metadata.map(|m| serde_json::to_string(&m)).transpose() {
                            Ok(metadata_json) => {
                                wit::TransformOutcome::Patch(wit::Patch { ts, metadata_json })
                            }
                            Err(e) => wit::TransformOutcome::Reject(format!(
                                "the patched metadata cannot be written as JSON: {e}"
                            )),
                        }
                    }
                },
            })
            .collect()
    })
}

#[doc(hidden)]
pub fn __filter<T: Filter>(
    ctx: wit::RunContext,
    records: Vec<wit::CheckpointRecord>,
) -> Result<Vec<wit::FilterOutcome>, String> {
    let ctx = context(ctx);
    with_state::<T, _>(|plugin| {
        records
            .into_iter()
            .map(|r| match record(r) {
                Err(e) => wit::FilterOutcome::Reject(e),
                Ok(r) => match plugin.filter(&ctx, &r) {
                    Verdict::Keep => wit::FilterOutcome::Keep,
                    Verdict::Drop => wit::FilterOutcome::Drop,
                    Verdict::Reject(reason) => wit::FilterOutcome::Reject(reason),
                },
            })
            .collect()
    })
}

/// Exports a [`Transformer`] as the plugin's component interface.
#[macro_export]
macro_rules! export_transformer {
    ($plugin:ty) => {
        struct __CkptMigrateTransformer;
        impl $crate::transformer_bindings::exports::ckpt_migrate::plugin::transformer::Guest
            for __CkptMigrateTransformer
        {
            fn init(
                config_json: String,
            ) -> Result<$crate::transformer_bindings::ckpt_migrate::plugin::types::PluginInfo, String> {
                $crate::__init(config_json, <$plugin as $crate::Transformer>::new, <$plugin as $crate::Transformer>::info())
            }
            fn transform(
                ctx: $crate::transformer_bindings::ckpt_migrate::plugin::types::RunContext,
                records: Vec<$crate::transformer_bindings::ckpt_migrate::plugin::types::CheckpointRecord>,
            ) -> Result<Vec<$crate::transformer_bindings::ckpt_migrate::plugin::types::TransformOutcome>, String> {
                $crate::__transform::<$plugin>(ctx, records)
            }
        }
        $crate::transformer_bindings::__export_transformer_world!(__CkptMigrateTransformer);
    };
}

/// Exports a [`Filter`] as the plugin's component interface.
#[macro_export]
macro_rules! export_filter {
    ($plugin:ty) => {
        struct __CkptMigrateFilter;
        impl $crate::filter_bindings::exports::ckpt_migrate::plugin::filter::Guest for __CkptMigrateFilter {
            fn init(
                config_json: String,
            ) -> Result<$crate::transformer_bindings::ckpt_migrate::plugin::types::PluginInfo, String> {
                $crate::__init(config_json, <$plugin as $crate::Filter>::new, <$plugin as $crate::Filter>::info())
            }
            fn filter(
                ctx: $crate::transformer_bindings::ckpt_migrate::plugin::types::RunContext,
                records: Vec<$crate::transformer_bindings::ckpt_migrate::plugin::types::CheckpointRecord>,
            ) -> Result<Vec<$crate::transformer_bindings::ckpt_migrate::plugin::types::FilterOutcome>, String> {
                $crate::__filter::<$plugin>(ctx, records)
            }
        }
        $crate::filter_bindings::__export_filter_world!(__CkptMigrateFilter);
    };
}
