//! The Parquet store: our own columnar export (view columns for analytics, raw
//! columns for a lossless restore), one file or Hive partitions. Written as a
//! destination, read back as a source so that an export restores.

pub mod config;
pub mod items;
mod read;
mod write;

pub use items::open_item_sink;
pub use read::ParquetSource;
pub use write::{DEFAULT_ROW_GROUP_BYTES, ParquetSink, schema, to_record_batch};

/// Hive's name for an empty or missing partition value.
const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";
