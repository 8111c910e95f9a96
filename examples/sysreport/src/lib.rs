//! `sysreport`: a disk and memory report of the machine, from three granted
//! files (`/proc/meminfo`, `/proc/mounts`, `/etc/os-release`), as JSON.
//!
//! The request's value picks a section (`"memory"`, `"mounts"`, `"os"`);
//! without one, the reply holds all three:
//!
//! ```json
//! {"os":"Debian GNU/Linux 12 (bookworm)",
//!  "memory":{"total_kib":2048000,"available_kib":1024000,"used_percent":50,"swap_total_kib":0,"swap_free_kib":0},
//!  "mounts":[{"device":"/dev/vda1","path":"/","type":"ext4","read_only":false}],"mounts_omitted":0}
//! ```
//!
//! Build: `cargo build --profile wasm --target wasm32-wasip2`
//! Test:  `cargo test` (natively, with the SDK's test host and the fixtures
//! in `tests/fixtures/`)

use guestward_sdk::{Command, Reply, Request, export_command, files};
use serde_json::{Map, Value, json};

mod parse;

pub use parse::{Memory, Mount};

/// Bytes of mount list a reply holds at most: with the rest of the report,
/// well inside the 4096 bytes `policy.toml` asks for. The mounts past it are
/// counted in `mounts_omitted`.
pub const MOUNTS_BUDGET: usize = 3000;

pub struct Sysreport;

impl Command for Sysreport {
    const NAMES: &'static [&'static str] = &["sysreport"];
    const SUMMARY: &'static str = "Report the OS, memory and mounted file systems";
    const ASKS: &'static str = include_str!("../policy.toml");

    fn handle(request: Request<'_>) -> Reply {
        let section = match request.raw_value().trim() {
            "" | "null" => None,
            _ => match request.string() {
                Some(name) => Some(name),
                None => return Reply::error("the value is a section name: \"memory\", \"mounts\" or \"os\""),
            },
        };
        match report(section.as_deref()) {
            Ok(report) => Reply::ok(Value::Object(report).to_string()),
            Err(error) => Reply::error(error),
        }
    }
}

export_command!(Sysreport);

/// The report, or all of it without a section.
fn report(section: Option<&str>) -> Result<Map<String, Value>, String> {
    let mut report = Map::new();
    let all = section.is_none();
    if let Some(other) = section.filter(|name| !["memory", "mounts", "os"].contains(name)) {
        return Err(format!("no section {other:?}: use \"memory\", \"mounts\" or \"os\""));
    }
    if all || section == Some("os") {
        report.insert("os".into(), os_name()?.map_or(Value::Null, Value::String));
    }
    if all || section == Some("memory") {
        let memory = Memory::parse(&read_text("/proc/meminfo")?)?;
        report.insert("memory".into(), memory.to_json());
    }
    if all || section == Some("mounts") {
        let mounts = parse::mounts(&read_text("/proc/mounts")?);
        let (listed, omitted) = within_budget(&mounts);
        report.insert("mounts".into(), Value::Array(listed));
        report.insert("mounts_omitted".into(), json!(omitted));
    }
    Ok(report)
}

/// `PRETTY_NAME` of `/etc/os-release`; `None` when the file is missing or
/// not granted (it is optional), an error when it cannot be read.
fn os_name() -> Result<Option<String>, String> {
    match files::read("/etc/os-release") {
        Ok(bytes) => Ok(parse::pretty_name(&String::from_utf8_lossy(&bytes))),
        Err(files::Error::NotFound(_) | files::Error::NotGranted(_)) => Ok(None),
        Err(error) => Err(format!("cannot read /etc/os-release: {}", error.text())),
    }
}

fn read_text(path: &str) -> Result<String, String> {
    let bytes = files::read(path).map_err(|error| format!("cannot read {path}: {}", error.text()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The mounts that fit in [`MOUNTS_BUDGET`] bytes, and how many did not.
fn within_budget(mounts: &[Mount]) -> (Vec<Value>, usize) {
    let mut used = 0;
    let mut listed = Vec::new();
    for mount in mounts {
        let entry = mount.to_json();
        used += entry.to_string().len() + 1;
        if used > MOUNTS_BUDGET {
            break;
        }
        listed.push(entry);
    }
    let omitted = mounts.len() - listed.len();
    (listed, omitted)
}
