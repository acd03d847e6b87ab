//! ckpt-migrate: move LangGraph / LangChain checkpoints between stores, losslessly.
//!
//! The binary is a thin layer over this library: [`config`] builds a [`config::RunConfig`],
//! [`engine::run`] moves records from a [`sources::Source`] to a [`sinks::Sink`], and
//! [`codec`] turns LangGraph's stored values into plain JSON.

pub mod cli;
pub mod codec;
pub mod config;
pub mod dry_run;
pub mod engine;
pub mod error;
pub mod filters;
pub mod items;
pub mod json_text;
pub mod json_value;
pub mod lane;
pub mod migrate_items;
pub mod plugins;
pub mod read_pool;
pub mod record;
pub mod retry;
pub mod run;
pub mod secrets;
pub mod shard;
pub mod sinks;
pub mod sources;
pub mod stores;
pub mod verify;
