//! The host side of plugin API 0.1.0 (`wit/v0.1.0`): generated bindings and the
//! conversions between records and the WIT types. A newer API version gets a module
//! of its own; this one stays as it is.

pub mod transformer {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "transformer-plugin",
        // Calls into a plugin are async so that a deadline can drop them, even when
        // the guest waits inside a host call.
        exports: { default: async },
    });
}

pub mod filter {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "filter-plugin",
        exports: { default: async },
        with: {
            "ckpt-migrate:plugin/types": super::transformer::ckpt_migrate::plugin::types,
            "ckpt-migrate:plugin/host": super::transformer::ckpt_migrate::plugin::host,
        },
    });
}

pub use transformer::ckpt_migrate::plugin::host;
pub use transformer::ckpt_migrate::plugin::types;

/// The exported interfaces of this version, as they appear in a component.
pub const TRANSFORMER_EXPORT: &str = "ckpt-migrate:plugin/transformer@0.1.0";
pub const FILTER_EXPORT: &str = "ckpt-migrate:plugin/filter@0.1.0";
pub const VERSION: &str = "0.1.0";

use super::{Needs, Outcome, RunContext};
use crate::record::Checkpoint;

pub fn needs(n: types::Needs) -> Needs {
    Needs {
        metadata: n.contains(types::Needs::METADATA),
        checkpoint: n.contains(types::Needs::CHECKPOINT),
        pending_writes: n.contains(types::Needs::PENDING_WRITES),
    }
}

pub fn context(ctx: &RunContext) -> types::RunContext {
    types::RunContext {
        run_id: ctx.run_id.clone(),
        run_started_at: ctx.run_started_at.clone(),
        source_kind: ctx.source_kind.clone(),
        destination_kind: ctx.destination_kind.clone(),
        batch_index: ctx.batch_index,
    }
}

/// A record as the plugin asked for it: only the parts in `needs` are copied.
pub fn record(r: &Checkpoint, needs: Needs) -> types::CheckpointRecord {
    let view = r.view.as_ref();
    types::CheckpointRecord {
        thread_id: r.key.thread_id.clone(),
        checkpoint_ns: r.key.checkpoint_ns.clone(),
        checkpoint_id: r.key.checkpoint_id.clone(),
        parent_checkpoint_id: r.parent_checkpoint_id.clone(),
        ts: view.and_then(|v| v.ts.clone()),
        // The view's text when the engine made it where the record was decoded.
        metadata_json: needs.metadata.then(|| {
            view.map(|v| v.metadata_text().into_owned())
                .unwrap_or_else(|| "{}".into())
        }),
        checkpoint_json: needs.checkpoint.then(|| {
            view.map(|v| v.checkpoint_text().into_owned())
                .unwrap_or_else(|| "null".into())
        }),
        pending_writes: needs.pending_writes.then(|| {
            view.map(|v| {
                v.pending_writes
                    .iter()
                    .enumerate()
                    .map(|(i, w)| types::PendingWrite {
                        task_id: w.task_id.clone(),
                        channel: w.channel.clone(),
                        value_json: v.write_value_text(i).unwrap_or_default().into_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
        }),
    }
}

pub fn filter_outcome(o: types::FilterOutcome) -> Outcome {
    match o {
        types::FilterOutcome::Keep => Outcome::Keep,
        types::FilterOutcome::Drop => Outcome::Drop,
        types::FilterOutcome::Reject(reason) => Outcome::Reject(reason),
    }
}

pub fn transform_outcome(o: types::TransformOutcome) -> Outcome {
    match o {
        types::TransformOutcome::Keep => Outcome::Keep,
        types::TransformOutcome::Drop => Outcome::Drop,
        types::TransformOutcome::Reject(reason) => Outcome::Reject(reason),
        types::TransformOutcome::Patch(p) => Outcome::Patch {
            ts: p.ts,
            metadata_json: p.metadata_json,
        },
    }
}
