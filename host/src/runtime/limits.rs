//! The per-call resource limiter: a memory cap that says, afterwards,
//! whether it is what stopped the call.

use wasmtime::ResourceLimiter;

/// Elements one table may hold.
const MAX_TABLE_ELEMENTS: usize = 100_000;

#[derive(Debug)]
pub struct CallLimiter {
    memory_cap: usize,
    memory_refused: bool,
}

impl CallLimiter {
    pub fn new(memory_cap: u64) -> Self {
        Self {
            memory_cap: usize::try_from(memory_cap).unwrap_or(usize::MAX),
            memory_refused: false,
        }
    }

    /// True when the call tried to grow its memory past the cap.
    pub fn memory_refused(&self) -> bool {
        self.memory_refused
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            // An error (not `Ok(false)`) traps at once: a Rust guest would
            // abort on the failed allocation anyway, and this way the reason
            // is known.
            self.memory_refused = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes reached (wanted {desired})",
                self.memory_cap
            )));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
