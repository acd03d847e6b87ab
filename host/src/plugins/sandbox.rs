//! What a plugin instance runs inside: WASI with nothing granted, a memory limiter, a
//! time limit per call (epoch interruption), and the host `log` import.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use super::v0_1_0::host;

/// The epoch advances every tick; a call may run `timeout / TICK` ticks.
const TICK: Duration = Duration::from_millis(10);

/// Tables and instances a component may create (Python guests need ~64 instances).
const MAX_INSTANCES: usize = 256;
const MAX_TABLE_ELEMENTS: usize = 10_000_000;

pub struct PluginState {
    label: String,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: MemoryLimiter,
}

/// Refuses memory growth beyond the limit and remembers that it did.
pub struct MemoryLimiter {
    max_bytes: usize,
    hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
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
        // Nothing is inherited: no args, env, stdio, network, preopens.
        let mut builder = WasiCtx::builder();
        builder
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
            limits: MemoryLimiter {
                max_bytes: max_memory,
                hit: false,
            },
        })
    }

    pub fn limits_hit(&self) -> bool {
        self.limits.hit
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
        let label = &self.label;
        match level {
            host::Level::Debug => tracing::debug!("plugin {label}: {message}"),
            host::Level::Info => tracing::info!("plugin {label}: {message}"),
            host::Level::Warn => tracing::warn!("plugin {label}: {message}"),
            host::Level::Error => tracing::error!("plugin {label}: {message}"),
        }
    }
}

/// Links WASI (Rust guests import it even when unused; it grants nothing here) and
/// the host interface.
pub fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    host::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)?;
    Ok(())
}

/// Lets the next call run for at most `timeout`.
pub fn arm_deadline(store: &mut Store<PluginState>, timeout: Duration) {
    let ticks = timeout.as_millis().div_ceil(TICK.as_millis()).max(1);
    store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    store.epoch_deadline_trap();
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
