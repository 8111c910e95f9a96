//! Errors the test host injects instead of answering.

/// Which error a [`Fault`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The interface's `not-granted` case.
    NotGranted,
    /// A failure of the machine: `io` for `files`, `unavailable` for
    /// `xenstore`, `failed` for the others.
    Io,
}

/// An error injected into host calls: the `not-granted` or `io` error a
/// real machine or policy may give, so a test can check what the command
/// answers then.
///
/// ```
/// use guestward_sdk::{files, testing::{self, Fault}};
///
/// testing::reset();
/// testing::with_host(|host| {
///     host.files.insert("/proc/meminfo".into(), b"MemTotal: 1 kB\n".to_vec());
///     host.faults.push(Fault::io("files.read").on("/proc/meminfo").times(1));
/// });
/// assert!(matches!(files::read("/proc/meminfo"), Err(files::Error::Io(_))));
/// assert!(files::read("/proc/meminfo").is_ok(), "only once");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The call it applies to: `interface.function` (`files.read`,
    /// `xenstore.directory`, `programs.run`) or a whole interface (`files`).
    pub call: String,
    /// The path, key, program or URL it applies to (a path or key also
    /// covers what lies below it); `None`: every one.
    pub target: Option<String>,
    /// The error's case.
    pub kind: FaultKind,
    /// The error's text; empty: one naming the target and the fault.
    pub text: String,
    /// How many more calls it fails; `None`: every one.
    pub remaining: Option<u32>,
}

impl Fault {
    /// Inject `kind` into `call`.
    pub fn new(call: &str, kind: FaultKind) -> Self {
        Self {
            call: call.to_owned(),
            target: None,
            kind,
            text: String::new(),
            remaining: None,
        }
    }

    /// A `not-granted` error for `call`.
    pub fn not_granted(call: &str) -> Self {
        Self::new(call, FaultKind::NotGranted)
    }

    /// An `io` error (or the interface's failure case) for `call`.
    pub fn io(call: &str) -> Self {
        Self::new(call, FaultKind::Io)
    }

    /// Only for this path, key, program or URL.
    pub fn on(mut self, target: &str) -> Self {
        self.target = Some(target.to_owned());
        self
    }

    /// Only the next `count` matching calls.
    pub fn times(mut self, count: u32) -> Self {
        self.remaining = Some(count);
        self
    }

    /// With this error text.
    pub fn text(mut self, text: &str) -> Self {
        self.text = text.to_owned();
        self
    }

    fn matches(&self, call: &str, target: &str) -> bool {
        let call_matches = self.call == call || call.split('.').next() == Some(self.call.as_str());
        let target_matches = match &self.target {
            None => true,
            Some(wanted) => {
                target == wanted
                    || target
                        .strip_prefix(wanted.as_str())
                        .is_some_and(|rest| rest.starts_with('/') || wanted.ends_with('/'))
            }
        };
        call_matches && target_matches && self.remaining != Some(0)
    }
}

/// The first fault matching `call` on `target`, counted, as (kind, text).
pub(super) fn take(faults: &mut Vec<Fault>, call: &str, target: &str) -> Option<(FaultKind, String)> {
    let index = faults.iter().position(|fault| fault.matches(call, target))?;
    let fault = &mut faults[index];
    if let Some(remaining) = &mut fault.remaining {
        *remaining -= 1;
    }
    let text = if fault.text.is_empty() {
        let what = match fault.kind {
            FaultKind::NotGranted => "not granted",
            FaultKind::Io => "input/output error",
        };
        format!("{target}: {what} (injected by the test)")
    } else {
        fault.text.clone()
    };
    let kind = fault.kind;
    if fault.remaining == Some(0) {
        faults.remove(index);
    }
    Some((kind, text))
}
