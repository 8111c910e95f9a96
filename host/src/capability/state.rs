//! `state`: a small key-value store in host memory, private to each
//! component and kept between calls, never written to disk. Always granted.
//! It is how `keyinit` hands its Diffie-Hellman key to `password`.
//!
//! Values are wiped from memory when they are replaced, deleted or expire. An
//! entry with a time-to-live expires when it has not been read or written
//! for that long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use zeroize::Zeroizing;

use super::{CallInfo, Capability, NoConfig};
use crate::policy::{PolicyError, SectionErrors};
use crate::wit::state::{self as wit, Error};

/// Keys one component may hold.
pub const MAX_KEYS: usize = 64;
/// Bytes in one key.
pub const MAX_KEY_BYTES: usize = 256;
/// Bytes in one value.
pub const MAX_VALUE_BYTES: usize = 64 << 10;

struct Entry {
    value: Zeroizing<Vec<u8>>,
    ttl: Option<Duration>,
    last_used: Instant,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        self.ttl.is_some_and(|ttl| now.duration_since(self.last_used) >= ttl)
    }
}

/// One component's entries. `Debug` shows keys only, never values.
#[derive(Default)]
pub struct ComponentState {
    entries: HashMap<String, Entry>,
}

impl std::fmt::Debug for ComponentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.entries.keys()).finish()
    }
}

impl ComponentState {
    fn get(&mut self, key: &str, now: Instant) -> Option<Vec<u8>> {
        if self.entries.get(key).is_some_and(|entry| entry.expired(now)) {
            self.entries.remove(key);
        }
        let entry = self.entries.get_mut(key)?;
        entry.last_used = now;
        Some(entry.value.to_vec())
    }

    fn set(&mut self, key: &str, value: &[u8], ttl: Option<Duration>, now: Instant) -> Result<(), Error> {
        self.entries.retain(|_, entry| !entry.expired(now));
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::TooLarge(format!("keys are at most {MAX_KEY_BYTES} bytes")));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::TooLarge(format!("values are at most {MAX_VALUE_BYTES} bytes")));
        }
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_KEYS {
            return Err(Error::TooLarge(format!("a component holds at most {MAX_KEYS} keys")));
        }
        self.entries.insert(
            key.to_owned(),
            Entry {
                value: Zeroizing::new(value.to_vec()),
                ttl,
                last_used: now,
            },
        );
        Ok(())
    }

    fn delete(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// The `state` capability: every component's entries, keyed by component
/// name, kept for the life of the daemon. Always granted.
#[derive(Debug, Clone, Default)]
pub struct State {
    components: Arc<Mutex<HashMap<String, Arc<Mutex<ComponentState>>>>>,
}

impl State {
    fn for_component(&self, component: &str) -> Arc<Mutex<ComponentState>> {
        let mut components = self.components.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        components.entry(component.to_owned()).or_default().clone()
    }
}

/// One call's handle on its component's state.
#[derive(Debug)]
pub struct CallState {
    state: Arc<Mutex<ComponentState>>,
}

impl CallState {
    fn with<R>(&mut self, f: impl FnOnce(&mut ComponentState) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl Capability for State {
    const NAME: &'static str = "state";
    const POLICY_KEY: Option<&'static str> = None;
    const ALWAYS_GRANTED: bool = true;
    type Config = NoConfig;
    type Grant = ();
    type CallState = CallState;

    fn grant(_config: NoConfig, _errors: &SectionErrors<'_>) -> Result<Option<()>, PolicyError> {
        Ok(Some(()))
    }

    fn describe(_grant: &()) -> Vec<String> {
        Vec::new()
    }

    fn call_state(&self, _grant: Option<&Arc<()>>, call: &CallInfo<'_>) -> CallState {
        CallState {
            state: self.for_component(call.component),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallState,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallState>>(linker, get)
    }
}

impl wit::Host for CallState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.with(|state| state.get(&key, Instant::now()))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_seconds: Option<u32>) -> Result<(), Error> {
        let value = Zeroizing::new(value);
        let ttl = ttl_seconds.map(|seconds| Duration::from_secs(seconds.into()));
        self.with(|state| state.set(&key, &value, ttl, Instant::now()))
    }

    fn delete(&mut self, key: String) {
        self.with(|state| state.delete(&key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_after_their_ttl_without_use() {
        let mut state = ComponentState::default();
        let start = Instant::now();
        state
            .set("key", b"secret", Some(Duration::from_secs(60)), start)
            .unwrap();
        // Use within the ttl slides the expiry.
        assert!(state.get("key", start + Duration::from_secs(50)).is_some());
        assert!(state.get("key", start + Duration::from_secs(100)).is_some());
        assert!(state.get("key", start + Duration::from_secs(161)).is_none());
    }

    #[test]
    fn values_without_ttl_stay() {
        let mut state = ComponentState::default();
        let start = Instant::now();
        state.set("key", b"v", None, start).unwrap();
        assert_eq!(
            state.get("key", start + Duration::from_secs(86_400)).as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn sizes_are_capped() {
        let mut state = ComponentState::default();
        let now = Instant::now();
        assert!(state.set("k", &vec![0; MAX_VALUE_BYTES + 1], None, now).is_err());
        for index in 0..MAX_KEYS {
            state.set(&index.to_string(), b"", None, now).unwrap();
        }
        assert!(state.set("one more", b"", None, now).is_err());
        // Replacing an existing key is still fine.
        assert!(state.set("0", b"new", None, now).is_ok());
    }

    #[test]
    fn components_do_not_see_each_other() {
        let store = State::default();
        let mut a = CallState {
            state: store.for_component("a"),
        };
        let mut b = CallState {
            state: store.for_component("b"),
        };
        a.with(|state| state.set("key", b"a", None, Instant::now())).unwrap();
        assert!(b.with(|state| state.get("key", Instant::now())).is_none());
    }

    #[test]
    fn debug_output_never_shows_values() {
        let mut state = ComponentState::default();
        state.set("dh-key", b"very secret", None, Instant::now()).unwrap();
        let shown = format!("{state:?}");
        assert!(shown.contains("dh-key") && !shown.contains("very secret"), "{shown}");
    }
}
