//! The sandbox: one wasmtime engine, components compiled once and
//! pre-instantiated, and for every call a fresh Store with exactly the
//! component's grants and limits.
//!
//! * [`bindings`]: the host side of the WIT world.
//! * [`component`]: loading a component and checking its imports.
//! * [`registry`]: routing command names to components.
//! * [`cache`]: compiled artifacts on disk.
//! * [`limits`]: the per-call memory cap.
//!
//! A call gets a fresh Store (a trap poisons a Store), a wall-clock deadline
//! enforced by epoch interruption, a memory cap and a reply-size cap. A
//! component that traps, loops or exhausts its memory yields a `500` reply
//! that says so; nothing it does reaches the daemon.

pub mod bindings;
mod cache;
pub mod component;
mod limits;
pub mod registry;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use self::bindings::CommandPre;
pub use self::cache::ArtifactCache;
pub use self::component::{ComponentInfo, Inspection, LoadError, LoadedComponent};
use self::limits::CallLimiter;
pub use self::registry::Registry;
use crate::capability::{self, CallInfo, CallStates, Grants, Services};
use crate::policy::{Limits, Policy};
use crate::protocol::Reply;
use crate::trust::TrustStore;

/// How often the epoch advances: the granularity of deadlines, and how
/// often a running component yields to other work.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Component instances alive at once (calls beyond this wait their turn).
const POOL_INSTANCES: u32 = 64;

/// Bytes of each pooled memory, table and stack kept resident between calls.
const KEEP_RESIDENT: usize = 64 << 10;

/// Bytes of a component's stderr kept per call (for panic messages).
const STDERR_CAPTURE: usize = 8 << 10;

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
    services: Services,
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
    /// The component's stderr, where Rust writes panic messages.
    stderr: MemoryOutputPipe,
    /// Each capability's state for this call.
    pub capabilities: CallStates,
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

impl Runtime {
    pub fn new(options: &RuntimeOptions, services: Services) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 16)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 8)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(usize::try_from(options.max_memory)?)
            // Reset up to this many bytes of a slot by zeroing them instead
            // of giving them back to the kernel: each call no longer pays
            // page faults and the TLB shootdowns of madvise (measured with
            // perf on `version`).
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(KEEP_RESIDENT)
            // ...and zero only the pages a call wrote, wherever they are
            // (PAGEMAP_SCAN, Linux 6.7+; older kernels zero the first
            // KEEP_RESIDENT bytes): a Rust command's stack sits at 1 MiB,
            // past the first 64 KiB, so without the scan `version` took 4
            // page faults and an madvise per call; with it, none.
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .parallel_compilation(true)
            // `.eh_frame` for compiled code only serves outside unwinders
            // (wasmtime never unwinds through wasm frames, and takes wasm
            // backtraces without it); registering it read every artifact's
            // tables at load and kept them resident.
            .native_unwind_info(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        capability::add_to_linker(&mut linker)?;
        let cache = ArtifactCache::open(&engine, options.cache_dir.as_deref());
        Ok(Self {
            ticker: EpochTicker::start(&engine),
            engine,
            linker,
            services,
            cache,
            trust: options.trust.clone(),
            permits: Semaphore::new(POOL_INSTANCES as usize),
        })
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Compile the component at `path` into the cache unless a valid
    /// artifact is there already, and cache its `info()` answer
    /// (`guestward compile`): the daemon then starts without running it.
    /// `info()` runs with no grants; if it fails, the daemon runs it again
    /// at load and refuses the component then.
    pub async fn compile_into_cache(&self, path: &Path, policy: &Policy) -> anyhow::Result<()> {
        anyhow::ensure!(self.cache.is_on(), "no usable cache directory");
        let sha256 = component::sha256_file(path)?;
        let compiled = self.cache.load_or_compile(&self.engine, path, &sha256)?;
        if self.cache.info(&sha256).is_none() {
            let candidate = self.candidate(path, &sha256, compiled, policy)?;
            if let Ok(info) = self.info(&candidate).await {
                self.cache.store_info(&sha256, &info);
            }
        }
        Ok(())
    }

    /// True when some `.wasm` in `dir` has no artifact in the cache yet
    /// (a first boot): the daemon then compiles in a child process.
    pub fn cache_is_cold(&self, dir: &Path) -> bool {
        self.cache.is_on()
            && wasm_files(dir)
                .iter()
                .any(|path| component::sha256_file(path).is_ok_and(|sha256| !self.cache.has_artifact(&sha256)))
    }

    /// Load every `.wasm` in `dir`, in name order. Components that cannot be
    /// loaded are refused with an error log line and skipped.
    pub async fn load_dir(&self, dir: &Path, policy: &Policy) -> anyhow::Result<Vec<LoadedComponent>> {
        std::fs::read_dir(dir)
            .map_err(|error| anyhow::anyhow!("cannot read commands directory {}: {error}", dir.display()))?;
        let paths = wasm_files(dir);
        let mut loaded = Vec::new();
        for path in paths {
            match self.load(&path, policy).await {
                Ok(component) => {
                    tracing::info!(
                        component = component.name,
                        names = ?component.info.names,
                        version = component.info.version,
                        sha256 = component.sha256,
                        provenance = component.provenance.as_ref().map(ToString::to_string),
                        "loaded command component"
                    );
                    loaded.push(component);
                }
                Err(error) => tracing::error!(%error, "refused command component"),
            }
        }
        Ok(loaded)
    }

    /// Load one component: compile (or take from the cache), check every
    /// import against the grants of its policy entry, pre-instantiate, and
    /// ask it what it answers (or find its answer in the cache).
    pub async fn load(&self, path: &Path, policy: &Policy) -> Result<LoadedComponent, LoadError> {
        let sha256 = component::sha256_file(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |error: wasmtime::Error| LoadError::Invalid {
            path: path.to_owned(),
            reason: format!("{error:#}"),
        };
        let provenance = match &self.trust {
            Some(trust) => Some(trust.check(path, &sha256)?),
            None => None,
        };
        let compiled = self
            .cache
            .load_or_compile(&self.engine, path, &sha256)
            .map_err(invalid)?;
        let name = component::component_name(path);
        let entry = policy.component(&name);
        let grants = Grants::from_policy(&entry);
        let imports: Vec<String> = compiled
            .component_type()
            .imports(&self.engine)
            .map(|(import, _)| import.to_owned())
            .collect();
        for import in &imports {
            component::check_import(import, &grants).map_err(|reason| LoadError::Refused {
                path: path.to_owned(),
                import: import.clone(),
                reason,
            })?;
        }
        let pre = self
            .linker
            .instantiate_pre(&compiled)
            .and_then(CommandPre::new)
            .map_err(invalid)?;
        // `info()` runs with no grants at all: loading a component (at
        // start, for `policy check`, when staging an update) must never
        // let its code act on the machine.
        let mut component = LoadedComponent {
            name,
            path: path.to_owned(),
            sha256,
            provenance,
            info: ComponentInfo::default(),
            imports,
            grants: Grants::default(),
            limits: entry.limits,
            pre,
        };
        // A component answers `info()` the same for the same bytes: asked
        // once, the answer is cached with its artifact, and a warm start
        // instantiates nothing (each instantiation left its code and
        // memory resident for the daemon's life: about 2 MiB for the
        // built-ins).
        component.info = match self.cache.info(&component.sha256) {
            Some(info) if check_info(&info).is_ok() => {
                tracing::debug!(component = component.name, "info() answer taken from the cache");
                info
            }
            _ => {
                let info = self.info(&component).await.map_err(|reason| LoadError::Info {
                    path: path.to_owned(),
                    reason,
                })?;
                self.cache.store_info(&component.sha256, &info);
                info
            }
        };
        component.grants = grants;
        Ok(component)
    }

    /// What a component answers, imports and needs, without loading it for
    /// calls: every import is reported (not refused), and `refusal` says
    /// whether `policy` would let it load.
    pub async fn inspect(&self, path: &Path, policy: &Policy) -> anyhow::Result<Inspection> {
        let wasm = std::fs::read(path)?;
        let sha256 = component::sha256_hex(&wasm);
        let compiled = wasmtime::component::Component::new(&self.engine, &wasm)?;
        let name = component::component_name(path);
        let entry = policy.component(&name);
        let grants = Grants::from_policy(&entry);
        let imports: Vec<String> = compiled
            .component_type()
            .imports(&self.engine)
            .map(|(import, _)| import.to_owned())
            .collect();
        let refusal = imports.iter().find_map(|import| {
            component::check_import(import, &grants)
                .err()
                .map(|reason| format!("imports {import}, which {reason}"))
        });
        // Ask `info` with no grants at all: it needs none.
        let candidate = self.candidate(path, &sha256, compiled, policy)?;
        let info = self.info(&candidate).await;
        Ok(Inspection {
            name,
            sha256,
            info,
            imports,
            refusal,
            policy: policy.origin().to_owned(),
        })
    }

    /// Ask a component for its names, version and summary.
    async fn info(&self, component: &LoadedComponent) -> Result<ComponentInfo, String> {
        let mut store = self.new_store(component, "", "");
        let outcome = tokio::time::timeout(component.limits.deadline + EPOCH_TICK * 10, async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            instance.call_info(&mut store).await
        })
        .await;
        let info = match outcome {
            Ok(Ok(info)) => info,
            Ok(Err(error)) => return Err(failure_text(&error, store.data(), &component.limits)),
            Err(_) => return Err("did not answer within its deadline".to_owned()),
        };
        let info = ComponentInfo {
            names: info.names,
            version: info.version,
            summary: info.summary,
        };
        check_info(&info)?;
        Ok(info)
    }

    /// A component ready for `info()` only: no grants at all.
    fn candidate(
        &self,
        path: &Path,
        sha256: &str,
        compiled: wasmtime::component::Component,
        policy: &Policy,
    ) -> anyhow::Result<LoadedComponent> {
        let name = component::component_name(path);
        let limits = policy.component(&name).limits;
        let pre = CommandPre::new(self.linker.instantiate_pre(&compiled)?)?;
        Ok(LoadedComponent {
            name,
            path: path.to_owned(),
            sha256: sha256.to_owned(),
            provenance: None,
            info: ComponentInfo::default(),
            imports: Vec::new(),
            grants: Grants::default(),
            limits,
            pre,
        })
    }

    /// Run one request in a fresh sandbox.
    pub async fn call(&self, component: &LoadedComponent, command: &str, value: &str, request_id: &str) -> Reply {
        let Ok(_permit) = self.permits.acquire().await else {
            return Reply::error("the agent is shutting down");
        };
        let started = Instant::now();
        let mut store = self.new_store(component, command, request_id);
        // The epoch deadline stops a component that computes; this timeout
        // also stops one blocked in a host call.
        let outcome = tokio::time::timeout(component.limits.deadline + EPOCH_TICK * 10, async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            instance.call_handle(&mut store, command, value).await
        })
        .await;
        let reply = match outcome {
            Ok(Ok(reply)) => checked_reply(command, reply, &component.limits),
            Ok(Err(error)) => Reply::error(format!(
                "command '{command}' {}",
                failure_text(&error, store.data(), &component.limits)
            )),
            Err(_) => Reply::error(format!("command '{command}' {}", deadline_text(&component.limits))),
        };
        audit(component, command, request_id, &store, started, &reply);
        reply
    }

    fn new_store(&self, component: &LoadedComponent, command: &str, request_id: &str) -> Store<CallContext> {
        let call = CallInfo {
            component: &component.name,
            command,
            request_id,
            limits: &component.limits,
        };
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let context = CallContext {
            // Default WASI: no environment, no arguments, no preopened
            // directories, no network.
            wasi: WasiCtxBuilder::new().stderr(stderr.clone()).build(),
            table: ResourceTable::new(),
            limiter: CallLimiter::new(component.limits.memory),
            deadline_passed: false,
            stderr,
            capabilities: component.grants.call_states(&self.services, &call),
            _ticking: self.ticker.call_started(),
        };
        let mut store = Store::new(&self.engine, context);
        store.limiter(|context| &mut context.limiter);
        let deadline = Instant::now() + component.limits.deadline;
        store.epoch_deadline_callback(move |mut context| {
            if Instant::now() >= deadline {
                context.data_mut().deadline_passed = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Let other calls run, then check again next tick.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }
}

/// The `.wasm` files of `dir`, in name order.
pub fn wasm_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    paths.sort();
    paths
}

/// What every component must answer to `info()`.
fn check_info(info: &ComponentInfo) -> Result<(), String> {
    if info.names.is_empty() {
        return Err("it answers no command names".to_owned());
    }
    if let Some(bad) = info.names.iter().find(|name| !valid_command_name(name)) {
        return Err(format!("{bad:?} is not a valid command name"));
    }
    Ok(())
}

fn valid_command_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The audit record of one call: who ran what, with which interfaces, for
/// how long, and how it ended. Never a value: those may be secrets.
fn audit(
    component: &LoadedComponent,
    command: &str,
    request_id: &str,
    store: &Store<CallContext>,
    started: Instant,
    reply: &Reply,
) {
    tracing::info!(
        target: AUDIT_TARGET,
        request = request_id,
        command,
        component = component.name,
        sha256 = component.sha256,
        capabilities = store.data().capabilities.used().join(","),
        elapsed_us = started.elapsed().as_micros() as u64,
        code = reply.code,
        "call"
    );
}

/// The tracing target of audit records (`--audit-log` writes them to a file).
pub const AUDIT_TARGET: &str = "guestward::audit";

/// Enforce the reply-size cap and sane return codes.
fn checked_reply(command: &str, reply: bindings::guestward::command::types::Reply, limits: &Limits) -> Reply {
    let size = reply.code.len() + reply.message.len();
    if size > limits.reply_bytes {
        return Reply::error(format!(
            "command '{command}' replied with {size} bytes, over its limit of {} bytes",
            limits.reply_bytes
        ));
    }
    let code_ok =
        !reply.code.is_empty() && reply.code.len() <= 16 && reply.code.bytes().all(|b| b.is_ascii_alphanumeric());
    if !code_ok {
        return Reply::error(format!(
            "command '{command}' returned an invalid return code {:?}",
            reply.code
        ));
    }
    Reply::new(reply.code, reply.message)
}

fn deadline_text(limits: &Limits) -> String {
    format!(
        "did not finish within its deadline of {} ms",
        limits.deadline.as_millis()
    )
}

/// Why a call failed, in words for the reply.
fn failure_text(error: &wasmtime::Error, context: &CallContext, limits: &Limits) -> String {
    if context.deadline_passed {
        return deadline_text(limits);
    }
    if context.limiter.memory_refused() {
        return format!("exceeded its memory limit of {} MiB", limits.memory >> 20);
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!("exited with status {} instead of replying", exit.0);
    }
    let panic = panic_message(&context.stderr.contents());
    match (error.downcast_ref::<Trap>(), panic) {
        (_, Some(message)) => format!("panicked: {message}"),
        (Some(Trap::StackOverflow), None) => "overflowed its stack".to_owned(),
        (Some(trap), None) => format!("crashed: {trap}"),
        (None, None) => format!("failed: {}", error.root_cause()),
    }
}

/// The message of a Rust panic in captured stderr (`panicked at src/x.rs:1:2:\nmessage`).
fn panic_message(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let after = text.split_once("panicked at ")?.1;
    let message: Vec<&str> = after
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("note: "))
        .collect();
    let message = message.join(" ");
    let message = message.trim();
    if message.is_empty() {
        return None;
    }
    Some(message.chars().take(512).collect())
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own
/// (a tokio task could be starved by the very work it must interrupt), but
/// only while a call runs: with nothing running the thread sleeps on a
/// condition variable and the process has no timer at all.
struct EpochTicker {
    shared: Arc<TickerShared>,
}

#[derive(Default)]
struct TickerShared {
    /// Calls running now.
    running: Mutex<usize>,
    wake: Condvar,
    /// The ticker waits on `wake` (changed under the `running` lock): only
    /// then does a call need to wake it, which spares a futex syscall per
    /// call while the ticker sleeps between ticks.
    parked: AtomicBool,
    stop: AtomicBool,
    /// Ticks so far (the unit test watches it).
    ticks: AtomicU64,
}

/// Held for the length of one call: the epoch advances while any is held.
pub(crate) struct Ticking {
    shared: Arc<TickerShared>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Self {
        let shared = Arc::new(TickerShared::default());
        let state = shared.clone();
        let engine = engine.weak();
        let spawned = std::thread::Builder::new()
            .name("guestward-epoch".into())
            .spawn(move || {
                while state.wait_for_a_call() {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                    state.ticks.fetch_add(1, Ordering::Relaxed);
                }
            });
        if let Err(error) = spawned {
            // Without the ticker no deadline would ever pass.
            tracing::error!(%error, "cannot start the epoch thread");
            std::process::abort();
        }
        Self { shared }
    }

    /// A call starts: tick until it ends.
    fn call_started(&self) -> Ticking {
        let mut running = self.shared.lock();
        *running += 1;
        if *running == 1 && self.shared.parked.load(Ordering::Relaxed) {
            self.shared.wake.notify_one();
        }
        Ticking {
            shared: self.shared.clone(),
        }
    }
}

impl TickerShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Block while no call runs. False once the ticker is stopping.
    fn wait_for_a_call(&self) -> bool {
        let mut running = self.lock();
        while *running == 0 && !self.stop.load(Ordering::Relaxed) {
            self.parked.store(true, Ordering::Relaxed);
            running = self.wake.wait(running).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        self.parked.store(false, Ordering::Relaxed);
        !self.stop.load(Ordering::Relaxed)
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        let mut running = self.shared.lock();
        *running = running.saturating_sub(1);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        let _running = self.shared.lock();
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_found_in_stderr() {
        let stderr =
            b"\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom: it broke\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr).as_deref(), Some("boom: it broke"));
        assert_eq!(panic_message(b"nothing to see"), None);
    }

    #[test]
    fn command_names_are_plain() {
        assert!(valid_command_name("file_inject"));
        assert!(valid_command_name("version"));
        assert!(!valid_command_name("a b"));
        assert!(!valid_command_name(""));
    }

    #[test]
    fn the_epoch_advances_only_while_a_call_runs() {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let ticker = EpochTicker::start(&engine);
        let ticks = || ticker.shared.ticks.load(Ordering::Relaxed);
        std::thread::sleep(EPOCH_TICK * 5);
        assert_eq!(ticks(), 0, "the epoch advanced with no call running");
        let call = ticker.call_started();
        std::thread::sleep(EPOCH_TICK * 5);
        assert!(ticks() > 0, "the epoch did not advance during a call");
        drop(call);
        std::thread::sleep(EPOCH_TICK * 3);
        let after = ticks();
        std::thread::sleep(EPOCH_TICK * 5);
        assert_eq!(ticks(), after, "the epoch still advances after the call");
    }
}
