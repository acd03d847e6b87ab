//! What a plugin instance runs inside: WASI with nothing granted, one memory budget
//! for everything the instance allocates, a time limit per call, and the host `log`
//! import (bounded and escaped).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use super::guest_output::GuestOutput;
use super::output::{self, LogBudget};
use super::v0_1_0::host;

/// The epoch advances every tick; a running call yields to the host once a tick, so
/// the host can stop it at its deadline even while it computes.
const TICK: Duration = Duration::from_millis(10);

/// Caps on how many of each thing one plugin instance may create. Python guests
/// need ~64 instances; no guest we know needs more than a few memories or tables.
const MAX_INSTANCES: usize = 256;
const MAX_MEMORIES: usize = 32;
const MAX_TABLES: usize = 64;
/// Host bytes a table element costs (a pointer), counted against the memory budget.
const TABLE_ELEMENT_BYTES: usize = 8;

pub struct PluginState {
    label: String,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: MemoryBudget,
    log_budget: LogBudget,
    /// What the guest writes to stdout and stderr.
    output: GuestOutput,
}

/// One budget for everything an instance allocates in host memory: every linear
/// memory and every table, from their initial sizes on (wasmtime asks the limiter
/// when they are created too). Growth past it is refused, and remembered.
pub struct MemoryBudget {
    max_bytes: usize,
    used: usize,
    /// What the last approved growth added, taken back if the growth then failed.
    pending: usize,
    hit: bool,
}

impl MemoryBudget {
    fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            used: 0,
            pending: 0,
            hit: false,
        }
    }

    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let added = desired.saturating_sub(current);
        match self.used.checked_add(added) {
            Some(total) if total <= self.max_bytes => {
                self.used = total;
                self.pending = added;
                true
            }
            _ => {
                self.hit = true;
                self.pending = 0;
                false
            }
        }
    }

    fn growth_failed(&mut self) {
        self.used -= std::mem::take(&mut self.pending);
    }
}

impl wasmtime::ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.growth_failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.growth_failed();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// A clock stopped at the Unix epoch: plugins get time from the run context only.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl PluginState {
    pub fn new(label: &str, max_memory: usize, allow_dir: Option<&Path>) -> Result<Self, String> {
        // Nothing is inherited: no args, env, stdio, network, preopens. stdout and
        // stderr go to a bounded buffer the host logs after each call.
        let output = GuestOutput::default();
        let mut builder = WasiCtx::builder();
        builder
            .stdout(output.clone())
            .stderr(output.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(rand::rngs::StdRng::seed_from_u64(0))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(0))
            .insecure_random_seed(0)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(dir) = allow_dir {
            builder
                .preopened_dir(dir, "/data", FsPerms::ReadOnly)
                .map_err(|e| format!("cannot grant {}: {e}", dir.display()))?;
        }
        Ok(Self {
            label: label.to_owned(),
            wasi: builder.build(),
            table: ResourceTable::new(),
            limits: MemoryBudget::new(max_memory),
            log_budget: LogBudget::default(),
            output,
        })
    }

    pub fn limits_hit(&self) -> bool {
        self.limits.hit
    }

    /// Ends a call: logs what the guest wrote to stdout/stderr (as warnings when the
    /// call `failed`), says once how many log messages it wrote over its budget, and
    /// gives the next call a fresh budget. Returns the line of its output that says what went wrong.
    pub fn end_call(&mut self, failed: bool) -> Option<String> {
        let written = self.output.take();
        let label = &self.label;
        for line in &written.lines {
            let line = output::one_line(line, output::MAX_LOG_MESSAGE_BYTES);
            if failed {
                tracing::warn!("plugin {label} wrote: {line}");
            } else {
                tracing::info!("plugin {label} wrote: {line}");
            }
        }
        if written.dropped > 0 {
            tracing::warn!(
                "plugin {label}: {} earlier line(s) of its output not shown",
                written.dropped
            );
        }
        let last = written
            .cause()
            .map(|l| output::one_line(l, output::MAX_ERROR_BYTES).into_owned());
        self.end_log_budget();
        last
    }

    fn end_log_budget(&mut self) {
        let suppressed = self.log_budget.reset();
        if suppressed > 0 {
            tracing::warn!(
                "plugin {}: {suppressed} more log message(s) of this call not shown (at most {} messages, {} KiB per call)",
                self.label,
                output::MAX_LOG_MESSAGES_PER_CALL,
                output::MAX_LOG_BYTES_PER_CALL / 1024
            );
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for PluginState {
    fn log(&mut self, level: host::Level, message: String) {
        if !self.log_budget.admit(message.len()) {
            return;
        }
        let label = &self.label;
        let message = output::one_line(&message, output::MAX_LOG_MESSAGE_BYTES);
        match level {
            host::Level::Debug => tracing::debug!("plugin {label}: {message}"),
            host::Level::Info => tracing::info!("plugin {label}: {message}"),
            host::Level::Warn => tracing::warn!("plugin {label}: {message}"),
            host::Level::Error => tracing::error!("plugin {label}: {message}"),
        }
    }
}

/// Links WASI (Rust guests import it even when unused; it grants nothing here) and
/// the host interface. WASI is linked in its async form: a guest that blocks in a
/// host call (a sleep, a poll on a clock) waits on a future that the call's deadline
/// drops, so no host call outlives the time limit.
pub fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    host::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)?;
    Ok(())
}

/// Makes running wasm yield to the host every tick, so the timer that bounds a call
/// (and Ctrl-C) can end it even in a loop that never calls out.
pub fn yield_every_tick(store: &mut Store<PluginState>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
}

/// Advances the engine's epoch every tick until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> Arc<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch ticker");
        Arc::new(Self { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
