//! The sandbox: one wasmtime engine, components compiled once and
//! pre-instantiated, and for every call a fresh Store with exactly the
//! component's grants and limits.
//!
//! * [`engine`]: compiler and pool settings, the epoch ticker.
//! * [`load`]: the one load pipeline (trust, compile or cache, imports,
//!   `info`), for serving, updates, `inspect` and `policy check`.
//! * [`call`]: one call, its failure texts and its audit record.
//! * [`component`]: what a loaded component is.
//! * [`registry`]: routing command names to components.
//! * [`cache`]: compiled artifacts on disk.
//! * [`limits`]: the per-call memory cap.
//!
//! A call gets a fresh Store (a trap poisons a Store), a wall-clock deadline
//! enforced by epoch interruption, a memory cap and a reply-size cap. A
//! component that traps, loops or exhausts its memory yields a `500` reply
//! that says so; nothing it does reaches the daemon.

mod cache;
mod call;
pub mod component;
mod engine;
mod limits;
mod load;
pub mod registry;

use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use self::cache::ArtifactCache;
pub use self::call::{AUDIT_TARGET, CallReport, OUTPUT_TARGET, Outcome};
pub use self::component::{ComponentInfo, ComponentSource, Inspection, LoadedComponent, SignatureSource};
use self::engine::{EPOCH_TICK, EpochTicker, POOL_INSTANCES, Ticking};
use self::limits::CallLimiter;
pub use self::load::{LoadError, is_off_by_default, wasm_files};
pub use self::registry::Registry;
use crate::capability::{self, CallStates, Capabilities, HasCallStates, Policy};
use crate::trust::TrustStore;

/// Settings of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The largest memory any call may use (sizes the instance pool).
    pub max_memory: u64,
    /// Where compiled components are cached; `None` compiles at every start.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Which components may run; `None` runs any (`guestward run`, which
    /// an operator points at one file on purpose).
    pub trust: Option<TrustStore>,
}

impl RuntimeOptions {
    /// What `policy` needs, no cache, no trust check.
    pub fn for_policy(policy: &Policy) -> Self {
        Self {
            max_memory: policy.max_memory(),
            cache_dir: None,
            trust: None,
        }
    }
}

/// The engine, the linker and what every call shares.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallContext>,
    capabilities: Capabilities,
    cache: ArtifactCache,
    trust: Option<TrustStore>,
    permits: Semaphore,
    ticker: EpochTicker,
}

/// The data of one call's Store.
pub struct CallContext {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    deadline_passed: bool,
    /// The component's stdout, for its author (debug logs).
    stdout: MemoryOutputPipe,
    /// The component's stderr, where Rust writes panic messages.
    stderr: MemoryOutputPipe,
    /// Each capability's state for this call.
    capabilities: CallStates,
    /// Keeps the epoch advancing while this call's Store lives.
    _ticking: Ticking,
}

impl WasiView for CallContext {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HasCallStates for CallContext {
    fn call_states(&mut self) -> &mut CallStates {
        &mut self.capabilities
    }
}

impl Runtime {
    pub fn new(options: &RuntimeOptions, capabilities: Capabilities) -> anyhow::Result<Self> {
        let engine = engine::new_engine(options.max_memory)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        capability::add_to_linker(&mut linker)?;
        let cache = ArtifactCache::open(&engine, options.cache_dir.as_deref());
        Ok(Self {
            ticker: EpochTicker::start(&engine),
            engine,
            linker,
            capabilities,
            cache,
            trust: options.trust.clone(),
            permits: Semaphore::new(POOL_INSTANCES as usize),
        })
    }

    /// The capabilities calls are served with.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
}
