//! The JSON store: our own export (one JSON object per checkpoint with its view and
//! its raw values, in per-thread or single files, and a `manifest.json`). Written as a
//! destination, read back as a source so that an export restores.

pub mod config;
mod items;
mod read;
mod sync;
mod write;

pub use items::{ITEMS_FILE, open_item_sink, open_item_source};
pub use read::{ExportedObject, JsonSource, record_of};
pub use write::{ExportObject, FORMAT, FORMAT_VERSION, JsonSink, export_compact, export_object};
