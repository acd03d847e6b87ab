//! Integration tests: one binary, shared harness (temp dirs, fixtures, the CLI).
//!
//! A panic is a failed test here, and test files are small: unwraps and whole-file
//! reads are fine in this binary.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod harness;

mod chat_upgrade;
mod cli;
mod dry_run;
mod filters;
mod guest_languages;
mod json_export;
mod oracle;
mod parquet_export;
mod plugins;
mod postgres_source;
mod redis_source;
mod reliability;
mod sandbox;
mod sharding;
mod sqlite_source;
mod store_destinations;
mod store_items;
mod type_zoo;
mod unified;
