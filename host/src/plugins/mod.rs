//! The WebAssembly plugin host: user filters and transformers as sandboxed components
//! (wasmtime component model), called once per batch.
//!
//! Sandbox: a plugin gets the host's `log` import and WASI with nothing behind it — no
//! preopened directory, no environment, no network, a clock frozen at the Unix epoch
//! and deterministic randomness — unless its YAML entry grants a read-only directory
//! (`allow_dir`). Each call is bounded in time (a deadline that drops the call, even
//! inside a blocking host call) and in memory (one budget for all its memories and
//! tables); what it returns or logs is bounded and escaped (`output`). A trap,
//! timeout or error fails that batch's records into the dead-letter file and the next
//! batch gets a fresh instance. Compiled components are cached on disk by wasmtime
//! (keyed by its version, settings and the component's bytes).

pub mod check;
pub mod guest_output;
pub mod output;
pub mod sandbox;
pub mod scaffold;
pub mod v0_1_0;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use crate::error::ConfigError;
use crate::record::{Checkpoint, TypedValue};
use sandbox::PluginState;

pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_MEMORY_MB: u64 = 256;

/// The reference plugins, built from `plugins/` by the build script and embedded.
pub const REFERENCE_PLUGINS: [(&str, &[u8]); 2] = [
    (
        "add_metadata",
        include_bytes!(concat!(env!("CKPT_PLUGIN_WASM_DIR"), "/add_metadata.wasm")),
    ),
    (
        "normalize_timestamps",
        include_bytes!(concat!(
            env!("CKPT_PLUGIN_WASM_DIR"),
            "/normalize_timestamps.wasm"
        )),
    ),
];

/// One plugin entry of the YAML (`transformers:` or `filters: {plugins: …}`): a
/// reference plugin's name, or a map.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// A reference plugin (`add_metadata`, `normalize_timestamps`).
    pub name: Option<String>,
    /// A component file (`.wasm`) implementing the plugin world.
    pub path: Option<PathBuf>,
    /// Passed to the plugin's `init` as JSON text (nested values allowed).
    #[serde(default)]
    pub config: Value,
    /// Wall-clock limit per call, in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
    /// Memory limit, in MiB (default 256).
    pub memory_mb: Option<u64>,
    /// A host directory the plugin may read (read-only), seen inside as `/data`.
    pub allow_dir: Option<PathBuf>,
}

impl PluginSpec {
    /// Reads a YAML entry: a string names a reference plugin.
    pub fn from_entry(entry: &Value, at: &str) -> Result<Self, ConfigError> {
        let spec = match entry {
            Value::String(name) => PluginSpec {
                name: Some(name.clone()),
                path: None,
                config: Value::Null,
                timeout_ms: None,
                memory_mb: None,
                allow_dir: None,
            },
            other => {
                serde_path_to_error::deserialize::<_, PluginSpec>(other.clone()).map_err(|e| {
                    let path = e.path().to_string();
                    let at = if path == "." {
                        at.to_owned()
                    } else {
                        format!("{at}.{path}")
                    };
                    ConfigError::Invalid(format!("{at}: {}", e.inner()))
                })?
            }
        };
        match (&spec.name, &spec.path) {
            (Some(name), None) if !REFERENCE_PLUGINS.iter().any(|(n, _)| n == name) => {
                Err(ConfigError::Invalid(format!(
                    "{at}: no reference plugin named {name:?} (there are: {}); give `path:` for your own",
                    REFERENCE_PLUGINS.map(|(n, _)| n).join(", ")
                )))
            }
            (None, None) => Err(ConfigError::Invalid(format!(
                "{at}: give a plugin `name` or a `path`"
            ))),
            (Some(_), Some(_)) => Err(ConfigError::Invalid(format!(
                "{at}: give either `name` (a reference plugin) or `path`, not both"
            ))),
            _ => Ok(spec),
        }
    }

    /// How the plugin is named in logs and the dead-letter file.
    pub fn label(&self) -> String {
        match (&self.name, &self.path) {
            (Some(n), _) => n.clone(),
            (None, Some(p)) => p.display().to_string(),
            (None, None) => "plugin".into(),
        }
    }

    fn bytes(&self) -> Result<Vec<u8>, PluginError> {
        match (&self.name, &self.path) {
            (Some(name), None) => REFERENCE_PLUGINS
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.to_vec())
                .ok_or_else(|| PluginError::Load(format!("no reference plugin {name:?}"))),
            // A component is compiled whole anyway.
            #[allow(clippy::disallowed_methods)]
            (_, Some(path)) => std::fs::read(path).map_err(|e| {
                PluginError::Load(format!("cannot read plugin {}: {e}", path.display()))
            }),
            (None, None) => Err(PluginError::Load("no plugin given".into())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin cannot be used at all (missing file, wrong API version, init refused).
    #[error("{0}")]
    Load(String),
    /// One call failed (trap, timeout, memory, the plugin's own error).
    #[error("{0}")]
    Call(String),
    /// The run was asked to stop (Ctrl-C, SIGTERM) while the plugin was in a call.
    #[error("plugin {0} was stopped: the run was interrupted")]
    Interrupted(String),
}

/// Which parts of a record a plugin reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub metadata: bool,
    pub checkpoint: bool,
    pub pending_writes: bool,
}

impl std::fmt::Display for Needs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<&str> = [
            (self.metadata, "metadata"),
            (self.checkpoint, "checkpoint"),
            (self.pending_writes, "pending-writes"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        if parts.is_empty() {
            write!(f, "keys and ts only")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// The run facts every call gets.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: String,
    pub run_started_at: String,
    pub source_kind: String,
    pub destination_kind: String,
    pub batch_index: u64,
}

/// A plugin's answer for one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Keep,
    Drop,
    Patch {
        ts: Option<String>,
        metadata_json: Option<String>,
    },
    Reject(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Filter,
    Transformer,
}

/// The engine shared by all plugins of a run, with its epoch ticker.
pub struct PluginHost {
    engine: Engine,
    ticker: std::sync::Arc<sandbox::EpochTicker>,
}

impl PluginHost {
    pub fn new() -> Result<Self, PluginError> {
        let mut config = wasmtime::Config::new();
        // Calls run on a fiber (async is always on in this wasmtime), so a deadline
        // can drop one wherever it is; the epoch makes running wasm yield.
        config.epoch_interruption(true);
        // No component-model async is used: calls are much cheaper without it.
        config.concurrency_support(false);
        if std::env::var_os("CKPT_MIGRATE_PLUGIN_PERF_MAP").is_some_and(|v| v == "1") {
            // For plugin authors: `perf` then names the plugin's own functions
            // (wasmtime writes /tmp/perf-PID.map); docs/plugins.md, "Profiling".
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(dir) = cache_dir() {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(&dir);
            match wasmtime::Cache::new(cache) {
                Ok(c) => {
                    config.cache(Some(c));
                }
                Err(e) => tracing::warn!("no compiled-plugin cache in {}: {e}", dir.display()),
            }
        }
        let engine = Engine::new(&config)
            .map_err(|e| PluginError::Load(format!("cannot start the plugin engine: {e}")))?;
        let ticker = sandbox::EpochTicker::start(engine.clone());
        Ok(Self { engine, ticker })
    }
}

/// Where compiled components are kept: `$CKPT_MIGRATE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/ckpt-migrate/components`, else `~/.cache/ckpt-migrate/components`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CKPT_MIGRATE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("ckpt-migrate").join("components"))
}

enum Bindings {
    Filter(v0_1_0::filter::FilterPlugin),
    Transformer(v0_1_0::transformer::TransformerPlugin),
}

/// A loaded, initialized plugin.
pub struct Plugin {
    pub label: String,
    pub name: String,
    pub version: String,
    pub needs: Needs,
    pub kind: Kind,
    spec: PluginSpec,
    engine: Engine,
    component: Component,
    linker: Linker<PluginState>,
    /// The live instance; `None` after a trap (a fresh one is made for the next call).
    live: Option<(Store<PluginState>, Bindings)>,
    /// Keeps time limits enforced while the plugin lives.
    _ticker: std::sync::Arc<sandbox::EpochTicker>,
}

/// Checks which plugin API the component implements, before instantiating it.
fn plugin_kind(engine: &Engine, component: &Component, label: &str) -> Result<Kind, PluginError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if exports.iter().any(|e| e == v0_1_0::TRANSFORMER_EXPORT) {
        return Ok(Kind::Transformer);
    }
    if exports.iter().any(|e| e == v0_1_0::FILTER_EXPORT) {
        return Ok(Kind::Filter);
    }
    let ours: Vec<&String> = exports
        .iter()
        .filter(|e| e.starts_with("ckpt-migrate:plugin/"))
        .collect();
    if let Some(other) = ours.first() {
        let version = other.rsplit_once('@').map_or("unknown", |(_, v)| v);
        return Err(PluginError::Load(format!(
            "plugin {label} implements plugin API {version} ({other}); this ckpt-migrate speaks API {}: \
             rebuild the plugin against wit/v{} or use a ckpt-migrate that supports {version}",
            v0_1_0::VERSION,
            v0_1_0::VERSION
        )));
    }
    Err(PluginError::Load(format!(
        "{label} is not a ckpt-migrate plugin: it exports neither {} nor {} (it exports: {})",
        v0_1_0::TRANSFORMER_EXPORT,
        v0_1_0::FILTER_EXPORT,
        if exports.is_empty() {
            "nothing".into()
        } else {
            exports.join(", ")
        }
    )))
}

impl Plugin {
    pub async fn load(host: &PluginHost, spec: &PluginSpec) -> Result<Self, PluginError> {
        let label = spec.label();
        let bytes = spec.bytes()?;
        let started = std::time::Instant::now();
        let component = Component::new(&host.engine, &bytes).map_err(|e| {
            PluginError::Load(format!("plugin {label} is not a valid component: {e}"))
        })?;
        tracing::debug!(
            "plugin {label}: component ready in {:.1} ms ({} bytes)",
            started.elapsed().as_secs_f64() * 1e3,
            bytes.len()
        );
        let kind = plugin_kind(&host.engine, &component, &label)?;
        let mut linker = Linker::new(&host.engine);
        sandbox::link(&mut linker)
            .map_err(|e| PluginError::Load(format!("plugin {label}: {e}")))?;
        let mut plugin = Plugin {
            label: label.clone(),
            name: label,
            version: String::new(),
            needs: Needs::default(),
            kind,
            spec: spec.clone(),
            engine: host.engine.clone(),
            component,
            linker,
            live: None,
            _ticker: host.ticker.clone(),
        };
        plugin
            .instantiate(std::future::pending())
            .await
            .map_err(|e| match e {
                PluginError::Call(m) => PluginError::Load(m),
                other => other,
            })?;
        Ok(plugin)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.spec.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1))
    }

    /// Runs `call` under the plugin's time limit; `stop` ends it early (Ctrl-C). Both
    /// drop the call wherever it is, inside wasm or inside a host call.
    async fn bounded<T>(
        label: &str,
        timeout: Duration,
        call: impl Future<Output = wasmtime::Result<T>>,
        stop: impl Future<Output = ()>,
    ) -> Result<T, PluginError> {
        tokio::select! {
            result = tokio::time::timeout(timeout, call) => match result {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(trap)) => Err(PluginError::Call(describe_trap(label, &trap))),
                Err(_elapsed) => Err(PluginError::Call(format!(
                    "plugin {label} timed out (limit {} ms per batch)",
                    timeout.as_millis()
                ))),
            },
            () = stop => Err(PluginError::Interrupted(label.to_owned())),
        }
    }

    /// A fresh instance, initialized with the plugin's config.
    async fn instantiate(&mut self, stop: impl Future<Output = ()>) -> Result<(), PluginError> {
        let label = self.label.clone();
        let timeout = self.timeout();
        let memory = self.spec.memory_mb.unwrap_or(DEFAULT_MEMORY_MB) * 1024 * 1024;
        let state = PluginState::new(
            &label,
            usize::try_from(memory).unwrap_or(usize::MAX),
            self.spec.allow_dir.as_deref(),
        )
        .map_err(|e| PluginError::Load(format!("plugin {label}: {e}")))?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        sandbox::yield_every_tick(&mut store);
        let config_json = if self.spec.config.is_null() {
            "{}".to_owned()
        } else {
            self.spec.config.to_string()
        };
        let (component, linker, kind) = (&self.component, &self.linker, self.kind);
        let store_ref = &mut store;
        let started = async move {
            Ok(match kind {
                Kind::Transformer => {
                    let b = v0_1_0::transformer::TransformerPlugin::instantiate_async(
                        &mut *store_ref,
                        component,
                        linker,
                    )
                    .await?;
                    let info = b
                        .ckpt_migrate_plugin_transformer()
                        .call_init(&mut *store_ref, &config_json)
                        .await?;
                    (Bindings::Transformer(b), info)
                }
                Kind::Filter => {
                    let b = v0_1_0::filter::FilterPlugin::instantiate_async(
                        &mut *store_ref,
                        component,
                        linker,
                    )
                    .await?;
                    let info = b
                        .ckpt_migrate_plugin_filter()
                        .call_init(&mut *store_ref, &config_json)
                        .await?;
                    (Bindings::Filter(b), info)
                }
            })
        };
        let instantiating = std::time::Instant::now();
        let result = Self::bounded(&label, timeout, started, stop).await;
        tracing::debug!(
            "plugin {label}: instance ready in {:.1} ms",
            instantiating.elapsed().as_secs_f64() * 1e3
        );
        let last_output = store.data_mut().end_call(result.is_err());
        let (bindings, info) = result.map_err(|e| with_notes(e, &store, last_output))?;
        let info = info.map_err(|e| {
            PluginError::Load(format!(
                "plugin {label} refused its config: {}",
                output::one_line(&e, output::MAX_ERROR_BYTES)
            ))
        })?;
        self.name = output::one_line(&info.name, 200).into_owned();
        self.version = output::one_line(&info.version, 200).into_owned();
        self.needs = v0_1_0::needs(info.needs);
        self.live = Some((store, bindings));
        Ok(())
    }

    /// Runs the plugin on a batch: one outcome per record, in order. `stop` ends the
    /// call early (the run is being interrupted). After any failure the instance is
    /// dropped: the next batch gets a fresh one.
    pub async fn run(
        &mut self,
        ctx: &RunContext,
        records: &[&Checkpoint],
        stop: impl Future<Output = ()>,
    ) -> Result<Vec<Outcome>, PluginError> {
        let mut stop = std::pin::pin!(stop);
        if self.live.is_none() {
            self.instantiate(stop.as_mut()).await.map_err(|e| match e {
                PluginError::Load(m) => PluginError::Call(m),
                other => other,
            })?;
        }
        let timeout = self.timeout();
        let label = self.label.clone();
        let wit_records: Vec<_> = records
            .iter()
            .map(|r| v0_1_0::record(r, self.needs))
            .collect();
        let wit_ctx = v0_1_0::context(ctx);
        let (store, bindings) = self.live.as_mut().expect("instantiated above");
        let call = async {
            Ok(match bindings {
                Bindings::Transformer(b) => b
                    .ckpt_migrate_plugin_transformer()
                    .call_transform(&mut *store, &wit_ctx, &wit_records)
                    .await?
                    .map(|o| o.into_iter().map(v0_1_0::transform_outcome).collect()),
                Bindings::Filter(b) => b
                    .ckpt_migrate_plugin_filter()
                    .call_filter(&mut *store, &wit_ctx, &wit_records)
                    .await?
                    .map(|o| o.into_iter().map(v0_1_0::filter_outcome).collect()),
            })
        };
        let result: Result<Result<Vec<Outcome>, String>, PluginError> =
            Self::bounded(&label, timeout, call, stop).await;
        let failed = !matches!(&result, Ok(Ok(o)) if o.len() == records.len());
        let last_output = store.data_mut().end_call(failed);
        let failure = match result {
            Ok(Ok(outcomes)) if outcomes.len() == records.len() => return Ok(outcomes),
            Ok(Ok(outcomes)) => PluginError::Call(format!(
                "plugin {label} answered {} outcomes for {} records",
                outcomes.len(),
                records.len()
            )),
            Ok(Err(message)) => with_notes(
                PluginError::Call(format!(
                    "plugin {label} failed: {}",
                    output::one_line(&message, output::MAX_ERROR_BYTES)
                )),
                store,
                None,
            ),
            Err(e) => with_notes(e, store, last_output),
        };
        // A failed instance may be in any state (half-done work, a dropped call):
        // the next batch gets a new one, as after a trap.
        self.live = None;
        Err(failure)
    }
}

/// Says so when the instance had hit its memory budget (that is usually why it
/// failed), and adds the last line the plugin wrote to stdout/stderr (a Python or JS
/// exception, a Rust panic message).
fn with_notes(
    e: PluginError,
    store: &Store<PluginState>,
    last_output: Option<String>,
) -> PluginError {
    let noted = |mut message: String| {
        if store.data().limits_hit() {
            message.push_str(" (memory limit reached)");
        }
        if let Some(line) = &last_output {
            message.push_str(&format!("; it wrote: {line}"));
        }
        message
    };
    match e {
        PluginError::Call(message) => PluginError::Call(noted(message)),
        PluginError::Load(message) => PluginError::Load(noted(message)),
        other => other,
    }
}

/// A trap as one clear sentence.
fn describe_trap(label: &str, e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("plugin {label} trapped: {trap}"),
        None => format!(
            "plugin {label} failed: {}",
            output::one_line(&format!("{e:#}"), output::MAX_ERROR_BYTES)
        ),
    }
}

/// Loads plugin specs in order (filters first, then transformers).
pub async fn load_all(specs: &[PluginSpec]) -> Result<Vec<Plugin>, PluginError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let host = PluginHost::new()?;
    let mut plugins = Vec::with_capacity(specs.len());
    for spec in specs {
        plugins.push(Plugin::load(&host, spec).await?);
    }
    for p in &plugins {
        tracing::info!(
            "plugin {}: {} {} ({:?}, reads {})",
            p.label,
            p.name,
            p.version,
            p.kind,
            p.needs
        );
    }
    Ok(plugins)
}

/// Applies a transformer's patch to a record: the view and the raw values both change,
/// so stores written from raw values see the new metadata and `ts` too. A patch is
/// checked whole before anything changes: a refused patch leaves the record as it was.
pub fn apply_patch(
    record: &mut Checkpoint,
    ts: Option<String>,
    metadata_json: Option<String>,
) -> Result<(), String> {
    // Metadata stored as JSON whose view is text, patched with text already in the
    // form it would be written in (the Rust SDK's, serde_json's compact text): taken
    // as it is, not parsed into a tree and written again (two thirds of the host's
    // cost of a patch).
    let as_it_is = record.metadata.type_tag == "json"
        && record.view.as_ref().is_some_and(|v| v.text.is_some());
    let (metadata_json, compact) = match metadata_json {
        Some(text) if as_it_is && crate::json_text::is_compact_object(&text) => (None, Some(text)),
        other => (other, None),
    };
    let metadata = match metadata_json {
        Some(text) => {
            let metadata: Value = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "patched metadata is not JSON: {}",
                    output::one_line(&e.to_string(), output::MAX_REASON_BYTES)
                )
            })?;
            if !metadata.is_object() {
                return Err("patched metadata is not a JSON object".into());
            }
            let raw = crate::codec::encode_like(&record.metadata, &metadata)?;
            Some((raw, metadata))
        }
        None => None,
    };
    let ts = match ts {
        Some(ts) => {
            // LangGraph writes `ts` as `datetime.isoformat()` with an offset, and
            // parses and orders it as such: any other text makes a record it cannot read.
            if chrono::DateTime::parse_from_rfc3339(&ts).is_err() {
                return Err(format!(
                    "patched ts {:?} is not an ISO 8601 timestamp with an offset \
                     (LangGraph writes e.g. 2025-06-01T12:00:00.000000+00:00)",
                    output::one_line(&ts, 100)
                ));
            }
            let document = crate::codec::set_document_ts(&record.checkpoint, &ts)?;
            let text = match record.view.as_ref().and_then(|v| v.text.as_ref()) {
                Some(text) => Some(patched_document_text(
                    record,
                    &text.checkpoint,
                    &document,
                    &ts,
                )?),
                None => None,
            };
            Some((document, ts, text))
        }
        None => None,
    };
    if let Some(text) = compact {
        record.metadata = TypedValue::new("json", text.clone());
        if let Some(view_text) = record.view.as_mut().and_then(|v| v.text.as_mut()) {
            view_text.metadata = text;
        }
    }
    if let Some((raw, metadata)) = metadata {
        record.metadata = raw;
        if let Some(view) = record.view.as_mut() {
            match &mut view.text {
                // Metadata stored as JSON is the view's text already (both are
                // serde_json's compact text): written once, not twice.
                Some(text) => {
                    text.metadata = match record.metadata.type_tag.as_str() {
                        "json" => String::from_utf8(record.metadata.bytes.clone())
                            .expect("written from a String"),
                        _ => crate::json_text::to_string(&metadata),
                    }
                }
                None => view.metadata = metadata,
            }
        }
    }
    if let Some((document, ts, text)) = ts {
        record.checkpoint = document;
        if let Some(view) = record.view.as_mut() {
            match (&mut view.text, text) {
                (Some(view_text), Some(text)) => view_text.checkpoint = text,
                _ => {
                    if let Some(doc) = view.checkpoint.as_object_mut() {
                        doc.insert("ts".into(), Value::String(ts.clone()));
                    }
                }
            }
            view.ts_parsed = crate::codec::parse_timestamp(&ts);
            view.ts = Some(ts);
        }
    }
    Ok(())
}

/// The text of a view's checkpoint document with `ts` set: the text read, changed and
/// written again (exact: numbers stay text, keys keep their order). A document deeper
/// than serde_json reads (128 levels) is decoded again from the patched `document`.
fn patched_document_text(
    record: &Checkpoint,
    text: &str,
    document: &TypedValue,
    ts: &str,
) -> Result<String, String> {
    if let Ok(mut doc) = serde_json::from_str::<Value>(text) {
        if let Some(doc) = doc.as_object_mut() {
            doc.insert("ts".into(), Value::String(ts.to_owned()));
        }
        return Ok(crate::json_text::to_string(&doc));
    }
    let mut fresh = Checkpoint {
        checkpoint: document.clone(),
        view: None,
        ..record.clone()
    };
    crate::codec::decode_record(&mut fresh).map_err(|e| format!("the patched checkpoint: {e}"))?;
    let mut view = fresh.view.ok_or("the patched checkpoint has no view")?;
    view.to_text();
    Ok(view.text.map(|t| t.checkpoint).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::RecordView;

    const TS: &str = "2030-01-02T03:04:05.000006+00:00";

    /// Patches `record` twice, once with its trees and once after the view was made
    /// text, checks the two views say the same, and returns the text one.
    fn patched_as_trees_and_as_text(record: Checkpoint, metadata: Option<&str>) -> RecordView {
        let mut trees = record.clone();
        let mut text = record;
        text.view.as_mut().expect("decoded").to_text();
        let metadata = metadata.map(str::to_owned);
        apply_patch(&mut trees, Some(TS.to_owned()), metadata.clone()).expect("patch on trees");
        apply_patch(&mut text, Some(TS.to_owned()), metadata).expect("patch on text");
        let (trees, text) = (trees.view.expect("view"), text.view.expect("view"));
        assert_eq!(text.ts, trees.ts);
        assert_eq!(text.ts_parsed, trees.ts_parsed);
        let as_text = crate::json_text::to_string;
        assert_eq!(text.checkpoint_text(), as_text(&trees.checkpoint));
        assert_eq!(text.metadata_text(), as_text(&trees.metadata));
        assert!(text.checkpoint_text().contains(&format!(r#""ts":"{TS}""#)));
        text
    }

    /// A `ts` patch on a text view deeper than serde_json parses (128 levels) still
    /// gives what it gives on the trees.
    #[test]
    fn a_ts_patch_on_a_deep_text_view_gives_what_it_gives_on_the_trees() {
        let mut record = check::sample_records().remove(0);
        let mut deep = Value::from("bottom");
        for _ in 0..300 {
            deep = Value::Array(vec![deep]);
        }
        let mut document: Value =
            serde_json::from_slice(&record.checkpoint.bytes).expect("a JSON document");
        document["channel_values"]["deep"] = deep;
        record.checkpoint =
            crate::codec::encode_like(&TypedValue::new("msgpack", Vec::new()), &document)
                .expect("msgpack");
        crate::codec::decode_record(&mut record).expect("decodes");
        patched_as_trees_and_as_text(record, None);
    }

    /// Compact metadata text on a text view is taken as it is; the record ends as it
    /// does when the patch is parsed and written again (its trees, or text that is
    /// not compact).
    #[test]
    fn a_compact_metadata_patch_is_taken_as_it_is() {
        let compact =
            r#"{"step":1e-7,"n":123456789012345678901234567890,"é":"\u0001","ok":[true,null]}"#;
        let spaced = r#"{"step": 1e-7, "n": 123456789012345678901234567890, "é": "\u0001", "ok": [true, null]}"#;
        for record in check::sample_records() {
            let mut text = record.clone();
            text.view.as_mut().expect("decoded").to_text();
            let mut parsed = text.clone();
            let mut trees = record;
            apply_patch(&mut text, None, Some(compact.into())).expect("compact");
            apply_patch(&mut parsed, None, Some(spaced.into())).expect("spaced");
            apply_patch(&mut trees, None, Some(compact.into())).expect("trees");
            assert_eq!(text.metadata, TypedValue::new("json", compact));
            assert_eq!(parsed.metadata, text.metadata);
            assert_eq!(trees.metadata, text.metadata);
            assert_eq!(text.view.expect("view").metadata_text(), compact);
            assert_eq!(parsed.view.expect("view").metadata_text(), compact);
        }
    }

    /// A patch gives the same view whether the engine made the view text (the usual
    /// case for the exports) or kept its trees.
    #[test]
    fn a_patch_on_a_text_view_gives_what_it_gives_on_the_trees() {
        let metadata = r#"{"step": 1e-7, "n": 123456789012345678901234567890, "é": "\u0001"}"#;
        for record in check::sample_records() {
            let text = patched_as_trees_and_as_text(record, Some(metadata));
            assert_eq!(
                text.metadata_text(),
                r#"{"step":1e-7,"n":123456789012345678901234567890,"é":"\u0001"}"#
            );
        }
    }
}
