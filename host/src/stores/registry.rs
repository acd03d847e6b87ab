//! Every store once: the kind users write (`source_type` / `destination_type`,
//! `--source` / `--destination`), the config struct its folder defines, and how that
//! config opens the store. Adding a store is its folder plus one line per direction in
//! the two lists at the bottom of this file.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{json, parquet, postgres, qdrant, redis, sqlite};
use crate::error::{ConfigError, OpenError};
use crate::filters::Filters;
use crate::items::{ItemFilters, ItemSink, ItemSource};
use crate::retry::RetryPolicy;
use crate::run::RunInfo;
use crate::sinks::{OpenSink, Sink};
use crate::sources::{OpenSource, Source};

/// Declares the kinds of one direction: the kind enum (YAML and command-line values),
/// the config enum holding the store's own (boxed) config struct, and the dispatch.
macro_rules! kinds {
    (
        $(#[$kind_doc:meta])* kind $kind:ident;
        $(#[$config_doc:meta])* config $config:ident;
        section $section:literal;
        opens $opens:path;
        $( $variant:ident = $name:literal => $store_config:ty, )+
    ) => {
        $(#[$kind_doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
        pub enum $kind {
            $(
                #[serde(rename = $name)]
                #[value(name = $name)]
                $variant,
            )+
        }

        impl $kind {
            /// The name users write.
            pub fn name(self) -> &'static str {
                match self {
                    $( $kind::$variant => $name, )+
                }
            }
        }

        $(#[$config_doc])*
        #[derive(Debug, Clone)]
        pub enum $config {
            $( $variant(Box<$store_config>), )+
        }

        impl $config {
            pub fn kind(&self) -> $kind {
                match self {
                    $( $config::$variant(_) => $kind::$variant, )+
                }
            }

            /// Reads the store's own config (its folder's struct, unknown keys refused)
            /// from the YAML or JSON value of the section.
            pub fn parse(kind: $kind, value: Value) -> Result<Self, ConfigError> {
                Ok(match kind {
                    $( $kind::$variant => $config::$variant(Box::new(typed($section, value)?)), )+
                })
            }

            /// The store's config, as what opens it.
            fn settings(&self) -> &dyn $opens {
                match self {
                    $( $config::$variant(c) => c.as_ref(), )+
                }
            }
        }
    };
}

/// Deserializes one store's config, naming the offending key on error.
fn typed<T: DeserializeOwned>(section: &str, value: Value) -> Result<T, ConfigError> {
    let value = if value.is_null() {
        Value::Object(Default::default())
    } else {
        value
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            section.to_owned()
        } else {
            format!("{section}.{path}")
        };
        ConfigError::Invalid(format!("{at}: {}", e.inner()))
    })
}

kinds! {
    /// The stores checkpoints are read from.
    kind SourceKind;
    /// A source store's settings.
    config StoreSourceConfig;
    section "source_config";
    opens OpenSource;
    Postgresql = "postgresql" => postgres::config::PostgresSourceConfig,
    Sqlite = "sqlite" => sqlite::config::SqliteSourceConfig,
    Redis = "redis" => redis::config::RedisSourceConfig,
    Unified = "unified" => qdrant::config::QdrantConfig,
    Json = "json" => json::config::JsonSourceConfig,
    Parquet = "parquet" => parquet::config::ParquetSourceConfig,
}

kinds! {
    /// The stores checkpoints are written to.
    kind DestinationKind;
    /// A destination store's settings.
    config SinkConfig;
    section "destination_config";
    opens OpenSink;
    Unified = "unified" => qdrant::config::QdrantConfig,
    Json = "json" => json::config::JsonSinkConfig,
    Parquet = "parquet" => parquet::config::ParquetSinkConfig,
    Postgresql = "postgresql" => postgres::config::PostgresSinkConfig,
    Sqlite = "sqlite" => sqlite::config::SqliteSinkConfig,
    Redis = "redis" => redis::config::RedisSinkConfig,
}

impl StoreSourceConfig {
    /// Opens the source with the run's filters (those the store can evaluate itself
    /// are pushed down).
    pub async fn open(&self, filters: &Filters) -> Result<Box<dyn Source>, OpenError> {
        self.settings().open_source(filters).await
    }
}

impl SinkConfig {
    /// Creates the sink; nothing is connected or written until the engine prepares it.
    pub fn open(&self, run: &RunInfo, retry: RetryPolicy) -> Result<Box<dyn Sink>, OpenError> {
        self.settings().open_sink(run, retry)
    }

    /// Records per batch for this destination when the run does not say.
    pub fn default_batch_size(&self) -> usize {
        self.settings().default_batch_size()
    }
}

/// Store items (`state: store`) are read from and written to the stores that hold
/// LangGraph Store items, and exported to JSON.
fn no_items(kind: &str, direction: &str) -> OpenError {
    OpenError::Config(ConfigError::Invalid(format!(
        "state: store: Store items cannot be {direction} {kind} in this version (sources: sqlite, postgresql, redis, json; destinations: sqlite, postgresql, redis, unified, json, parquet)"
    )))
}

impl StoreSourceConfig {
    /// Opens the source's LangGraph Store items.
    pub async fn open_items(
        &self,
        filters: &ItemFilters,
    ) -> Result<Box<dyn ItemSource>, OpenError> {
        match self {
            StoreSourceConfig::Sqlite(c) => sqlite::open_item_source(c, filters).await,
            StoreSourceConfig::Postgresql(c) => postgres::open_item_source(c, filters).await,
            StoreSourceConfig::Json(c) => json::open_item_source(c, filters),
            StoreSourceConfig::Redis(c) => redis::open_item_source(c, filters).await,
            other => Err(no_items(other.kind().name(), "read from")),
        }
    }
}

impl SinkConfig {
    /// Creates the destination of LangGraph Store items.
    pub fn open_items(&self, retry: RetryPolicy) -> Result<Box<dyn ItemSink>, OpenError> {
        match self {
            SinkConfig::Unified(c) => qdrant::open_item_sink(c, retry),
            SinkConfig::Parquet(c) => parquet::open_item_sink(c),
            SinkConfig::Sqlite(c) => Ok(sqlite::open_item_sink(c)),
            SinkConfig::Postgresql(c) => postgres::open_item_sink(c),
            SinkConfig::Json(c) => Ok(json::open_item_sink(c)),
            SinkConfig::Redis(c) => redis::open_item_sink(c),
        }
    }
}
