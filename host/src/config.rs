//! The run configuration: YAML file (`--config`) and/or command-line flags.
//!
//! This module merges the flags and the YAML; each store's own config struct lives in
//! its folder (`stores/<store>/config.rs`, `deny_unknown_fields`) and is picked by
//! kind in `stores/registry.rs`. Every error names the key it is about
//! (`source_config.conection_string: unknown field …`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ConfigError, OpenError};
use crate::filters::{FilterConfig, Filters};
use crate::plugins::PluginSpec;
use crate::retry::{DEFAULT_MAX_RETRIES, DEFAULT_RETRY_BUDGET_SECONDS, RetryPolicy};
use crate::run::RunInfo;
use crate::shard::{Shard, ShardConfig};
use crate::sources::Source;
use crate::sources::dead_letter::DeadLetterSource;
pub use crate::stores::{DestinationKind, SinkConfig, SourceKind, StoreSourceConfig};

pub use crate::sinks::DEFAULT_BATCH_SIZE;
pub const DEFAULT_MAX_ERRORS: u64 = 100;
pub const DEFAULT_STATE_DIR: &str = ".ckpt-migrate";
/// Batches are also cut by size, so a table of huge checkpoints stays in bounded memory.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// The YAML file, key for key as the seed wrote it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `postgresql`, `sqlite`, `redis`, `unified`, `json` or `parquet`.
    pub source_type: Option<SourceKind>,
    /// The source's own keys (see docs/configuration.md).
    #[serde(default)]
    pub source_config: Option<Value>,
    /// `unified`, `json`, `parquet`, `postgresql`, `sqlite` or `redis`.
    pub destination_type: Option<DestinationKind>,
    /// The destination's own keys.
    #[serde(default)]
    pub destination_config: Option<Value>,
    /// Declarative filters.
    #[serde(default)]
    pub filters: FilterConfig,
    /// WASM transformer plugins (names of reference plugins or `{path, config}`).
    #[serde(default)]
    pub transformers: Vec<Value>,
    /// Records per batch.
    pub batch_size: Option<usize>,
    /// Upper bound of a batch's raw size in bytes.
    pub max_batch_bytes: Option<usize>,
    /// Check everything, write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Where failed records go (JSON lines). Default: next to the output.
    pub dead_letter_path: Option<PathBuf>,
    /// Stop the run when more records than this have failed (0: never stop).
    pub max_errors: Option<u64>,
    /// Retries of a retriable store error before the run fails.
    pub max_retries: Option<usize>,
    /// Total seconds a run may spend waiting between retries of one operation.
    pub retry_budget_seconds: Option<u64>,
    /// Directory of the resume state files.
    pub state_dir: Option<PathBuf>,
    /// Only the threads of one shard: `{index: 3, count: 8}`; `index` may be
    /// `"${JOB_COMPLETION_INDEX}"`. See docs/sharding.md.
    pub shard: Option<ShardConfig>,
    /// What to move: `checkpoints` (default) or `store` — LangGraph Store items
    /// (long-term memory) from `PostgresStore` / `SqliteStore` tables. See
    /// docs/memory.md.
    pub state: Option<StateKind>,
}

/// What a run moves.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// Checkpoints (threads), chat histories.
    #[default]
    Checkpoints,
    /// LangGraph Store items (`BaseStore`: namespace, key, JSON value, TTL, vectors).
    Store,
}

/// Where the records come from.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// Replaying a dead-letter file.
    DeadLetter(PathBuf),
    /// A store.
    Store(StoreSourceConfig),
}

impl SourceConfig {
    /// The name of the source kind (`dead-letter` when replaying).
    pub fn kind_name(&self) -> &'static str {
        match self {
            SourceConfig::DeadLetter(_) => "dead-letter",
            SourceConfig::Store(store) => store.kind().name(),
        }
    }

    /// Opens the source with the run's filters.
    pub async fn open(&self, filters: &Filters) -> Result<Box<dyn Source>, OpenError> {
        match self {
            SourceConfig::DeadLetter(path) => Ok(Box::new(DeadLetterSource::open(path)?)),
            SourceConfig::Store(store) => store.open(filters).await,
        }
    }
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub source: SourceConfig,
    pub sink: SinkConfig,
    pub filters: FilterConfig,
    pub batch_size: usize,
    pub max_batch_bytes: usize,
    pub dry_run: bool,
    pub dead_letter_path: Option<PathBuf>,
    /// 0: never stop for failed records.
    pub max_errors: u64,
    pub retry: RetryPolicy,
    pub state_dir: PathBuf,
    pub resume: ResumeMode,
    /// A hash of what decides the output (stores, their settings, filters) with
    /// secrets removed: it names the resume state file.
    pub fingerprint: String,
    /// WASM plugins in the order they run: filter plugins, then transformers.
    pub plugins: Vec<PluginSpec>,
    /// Checkpoints or Store items.
    pub state: StateKind,
}

/// What to do with the state of an unfinished run of the same config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResumeMode {
    /// Refuse to start and say so.
    #[default]
    Ask,
    Resume,
    Restart,
}

/// What the command line contributes; flags win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub source: Option<SourceKind>,
    pub source_config: Option<String>,
    pub destination: Option<DestinationKind>,
    pub dest_config: Option<String>,
    pub batch_size: Option<usize>,
    pub dry_run: bool,
    pub dead_letter_path: Option<PathBuf>,
    pub filters: FilterConfig,
    pub max_errors: Option<u64>,
    pub resume: ResumeMode,
    /// Read the records of this dead-letter file instead of the source.
    pub replay_dead_letter: Option<PathBuf>,
    /// `--shard I/N`.
    pub shard: Option<Shard>,
    /// `--upgrade`: set as `upgrade` in the source's config.
    pub upgrade: Option<crate::stores::chat::Upgrade>,
    /// `--state`.
    pub state: Option<StateKind>,
}

impl RunConfig {
    /// What identifies a run of this config reading `source` (a new run id).
    pub fn run_info(&self, source: String) -> RunInfo {
        let mut run = RunInfo::new(self.source.kind_name(), source, self.sink.kind().name());
        run.shard = self.filters.shard;
        run
    }

    /// Builds the run config from an optional YAML file and the flags.
    pub fn load(file: Option<&Path>, flags: Overrides) -> Result<Self, ConfigError> {
        let file_config = match file {
            Some(path) => Some(read_file_config(path)?),
            None => None,
        };
        Self::from_parts(file_config, flags)
    }

    pub fn from_parts(file: Option<FileConfig>, flags: Overrides) -> Result<Self, ConfigError> {
        let file = file.unwrap_or(FileConfig {
            source_type: None,
            source_config: None,
            destination_type: None,
            destination_config: None,
            filters: FilterConfig::default(),
            transformers: Vec::new(),
            batch_size: None,
            max_batch_bytes: None,
            dry_run: false,
            dead_letter_path: None,
            max_errors: None,
            max_retries: None,
            retry_budget_seconds: None,
            state_dir: None,
            shard: None,
            state: None,
        });
        let state = flags.state.or(file.state).unwrap_or_default();
        let source_kind = flags.source.or(file.source_type);
        let source_kind = match (&flags.replay_dead_letter, source_kind) {
            // Replaying needs no source; the configured one (if any) is not read.
            (Some(_), kind) => Some(kind.unwrap_or(SourceKind::Sqlite)),
            (None, kind) => kind,
        };
        let source_kind = source_kind.ok_or_else(|| {
            ConfigError::Invalid("no source: give --source or `source_type` in --config".into())
        })?;
        let dest_kind = flags.destination.or(file.destination_type).ok_or_else(|| {
            ConfigError::Invalid(
                "no destination: give --destination or `destination_type` in --config".into(),
            )
        })?;
        let mut source_value = match flags.source_config {
            Some(text) => parse_json_flag("--source-config", &text)?,
            None => file.source_config.unwrap_or(Value::Null),
        };
        if let Some(upgrade) = flags.upgrade {
            if source_value.is_null() {
                source_value = Value::Object(Default::default());
            }
            if let Value::Object(map) = &mut source_value {
                map.insert("upgrade".into(), serde_json::json!(upgrade));
            }
        }
        let dest_value = match flags.dest_config {
            Some(text) => parse_json_flag("--dest-config", &text)?,
            None => file.destination_config.unwrap_or(Value::Null),
        };
        let mut filters = file.filters.clone().merged_with(flags.filters.clone());
        filters.shard = match (flags.shard, &file.shard) {
            (Some(shard), _) => Some(shard),
            (None, Some(config)) => Some(
                config
                    .shard()
                    .map_err(|e| ConfigError::Invalid(format!("shard: {e}")))?,
            ),
            (None, None) => None,
        };
        let fingerprint = fingerprint(&[
            serde_json::json!(flags.replay_dead_letter),
            serde_json::json!(source_kind.name()),
            source_value.clone(),
            serde_json::json!(dest_kind.name()),
            dest_value.clone(),
            serde_json::to_value(&filters).unwrap_or_default(),
            Value::Array(file.transformers.clone()),
            // Absent for checkpoints, so the resume states of earlier runs stay valid.
            match state {
                StateKind::Checkpoints => Value::Null,
                StateKind::Store => serde_json::json!("store"),
            },
        ]);
        let mut plugins = Vec::new();
        for (i, entry) in filters.plugins.iter().enumerate() {
            plugins.push(PluginSpec::from_entry(
                entry,
                &format!("filters.plugins[{i}]"),
            )?);
        }
        for (i, entry) in file.transformers.iter().enumerate() {
            plugins.push(PluginSpec::from_entry(
                entry,
                &format!("transformers[{i}]"),
            )?);
        }
        let source_value = expand_env(source_value, "source_config")?;
        let dest_value = expand_env(dest_value, "destination_config")?;
        let source = match &flags.replay_dead_letter {
            Some(path) => SourceConfig::DeadLetter(path.clone()),
            None => SourceConfig::Store(StoreSourceConfig::parse(source_kind, source_value)?),
        };
        let sink = SinkConfig::parse(dest_kind, dest_value)?;
        let batch_size = flags
            .batch_size
            .or(file.batch_size)
            .unwrap_or_else(|| sink.default_batch_size());
        if batch_size == 0 {
            return Err(ConfigError::Invalid(
                "batch_size: must be at least 1".into(),
            ));
        }
        filters.compile()?;
        match state {
            StateKind::Checkpoints if filters.namespace_prefix.is_some() => {
                return Err(ConfigError::Invalid(
                    "filters.namespace_prefix: applies to Store items only (state: store)".into(),
                ));
            }
            StateKind::Checkpoints => {}
            StateKind::Store => {
                crate::items::ItemFilters::compile(&filters)?;
                if !plugins.is_empty() {
                    return Err(ConfigError::Invalid(
                        "plugins run on checkpoints; with state: store they are not supported yet"
                            .into(),
                    ));
                }
                if flags.replay_dead_letter.is_some() {
                    return Err(ConfigError::Invalid(
                        "--replay-dead-letter replays checkpoints; Store items in a dead-letter file are re-read from their source with --resume or a new run"
                            .into(),
                    ));
                }
            }
        }
        Ok(RunConfig {
            source,
            sink,
            filters,
            batch_size,
            max_batch_bytes: file
                .max_batch_bytes
                .unwrap_or(DEFAULT_MAX_BATCH_BYTES)
                .max(1),
            dry_run: flags.dry_run || file.dry_run,
            dead_letter_path: flags.dead_letter_path.or(file.dead_letter_path),
            max_errors: flags
                .max_errors
                .or(file.max_errors)
                .unwrap_or(DEFAULT_MAX_ERRORS),
            retry: RetryPolicy {
                max_retries: file.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
                budget: std::time::Duration::from_secs(
                    file.retry_budget_seconds
                        .unwrap_or(DEFAULT_RETRY_BUDGET_SECONDS),
                ),
            },
            state_dir: file
                .state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            resume: flags.resume,
            fingerprint,
            plugins,
            state,
        })
    }
}

/// SHA-256 (hex, 16 bytes) of the canonical JSON of `parts`, secrets replaced first:
/// passwords in URLs and values of keys that name secrets. `${ENV}` references are
/// hashed as written, so a rotated password keeps the state valid.
fn fingerprint(parts: &[Value]) -> String {
    use sha2::Digest as _;
    fn scrub(value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(crate::secrets::redact_url(s)),
            Value::Array(items) => Value::Array(items.iter().map(scrub).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let secret = ["password", "api_key", "token", "secret"]
                            .iter()
                            .any(|s| k.to_ascii_lowercase().contains(s));
                        let v = if secret && v.is_string() {
                            Value::String("***".into())
                        } else {
                            scrub(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let scrubbed: Vec<Value> = parts.iter().map(scrub).collect();
    let text = crate::codec::python::canonical_json(&Value::Array(scrubbed));
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    // A config file is small by nature.
    #[allow(clippy::disallowed_methods)]
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let de = serde_yaml::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        ConfigError::Invalid(format!(
            "{}: {}{}",
            path.display(),
            key_prefix(e.path()),
            e.inner()
        ))
    })
}

fn parse_json_flag(flag: &str, text: &str) -> Result<Value, ConfigError> {
    serde_json::from_str(text)
        .map_err(|e| ConfigError::Invalid(format!("{flag} is not valid JSON: {e}")))
}

fn key_prefix(path: &serde_path_to_error::Path) -> String {
    let p = path.to_string();
    if p == "." {
        String::new()
    } else {
        format!("{p}: ")
    }
}

/// Replaces `${NAME}` in string values with the environment variable's value.
fn expand_env(value: Value, at: &str) -> Result<Value, ConfigError> {
    Ok(match value {
        Value::String(s) => Value::String(expand_env_str(&s, at)?),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| expand_env(v, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let inner = format!("{at}.{k}");
                    expand_env(v, &inner).map(|v| (k, v))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => other,
    })
}

fn expand_env_str(text: &str, at: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ConfigError::Invalid(format!("{at}: unterminated ${{ in value")))?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            ConfigError::Invalid(format!("{at}: environment variable {name} is not set"))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml(text: &str) -> Result<RunConfig, ConfigError> {
        let file: FileConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        RunConfig::from_parts(Some(file), Overrides::default())
    }

    #[test]
    fn unknown_store_keys_are_named() {
        let err = from_yaml(
            "source_type: sqlite\nsource_config: {conection_string: x}\ndestination_type: json\ndestination_config: {output_dir: out}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("source_config"), "{err}");
        assert!(err.contains("conection_string"), "{err}");
    }

    #[test]
    fn wrong_types_are_named() {
        let err = from_yaml(
            "source_type: sqlite\nsource_config: {connection_string: x.db}\ndestination_type: json\ndestination_config: {output_dir: out, indent: many}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("destination_config.indent"), "{err}");
    }

    #[test]
    fn the_batch_size_is_the_runs_else_the_destinations() {
        let run = |destination: &str, batch: &str| {
            from_yaml(&format!(
                "source_type: sqlite\nsource_config: {{connection_string: x.db}}\n\
                 {destination}{batch}"
            ))
            .unwrap()
            .batch_size
        };
        let json = "destination_type: json\ndestination_config: {output_dir: out}\n";
        let embedded = "destination_type: unified\ndestination_config: {path: ./memory}\n";
        let server =
            "destination_type: unified\ndestination_config: {qdrant_url: 'http://q:6333'}\n";
        assert_eq!(run(json, ""), DEFAULT_BATCH_SIZE);
        assert_eq!(
            run(embedded, ""),
            crate::stores::qdrant::EMBEDDED_BATCH_SIZE
        );
        assert_eq!(run(server, ""), DEFAULT_BATCH_SIZE);
        assert_eq!(run(embedded, "batch_size: 700\n"), 700);
    }

    #[test]
    fn env_values_are_expanded_and_missing_ones_named() {
        // SAFETY of the test: the variable name is unique to this test.
        let err = expand_env_str("${CKPT_MIGRATE_SURELY_UNSET_VAR}", "source_config.x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("CKPT_MIGRATE_SURELY_UNSET_VAR"));
        assert_eq!(expand_env_str("plain", "x").unwrap(), "plain");
    }
}
