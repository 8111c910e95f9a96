//! The engine every component runs on: compiler and pooling allocator
//! settings, and the epoch that turns deadlines into interrupts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of deadlines, and how
/// often a running component yields to other work.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Component instances alive at once (calls beyond this wait their turn).
pub const POOL_INSTANCES: u32 = 64;

/// Bytes of each pooled memory, table and stack kept resident between calls.
const KEEP_RESIDENT: usize = 64 << 10;

/// An engine whose pool holds [`POOL_INSTANCES`] instances of at most
/// `max_memory` bytes of linear memory each.
pub fn new_engine(max_memory: u64) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 16)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 8)
        .total_stacks(POOL_INSTANCES)
        .max_memory_size(usize::try_from(max_memory)?)
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
    Ok(Engine::new(&config)?)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own
/// (a tokio task could be starved by the very work it must interrupt), but
/// only while a call runs: with nothing running the thread sleeps on a
/// condition variable and the process has no timer at all.
pub struct EpochTicker {
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
pub struct Ticking {
    shared: Arc<TickerShared>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
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
    pub fn call_started(&self) -> Ticking {
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
