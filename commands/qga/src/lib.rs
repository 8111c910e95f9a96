//! `qga`: the read-only commands of the QEMU guest agent protocol, answered
//! as qemu-ga 7.2 answers them (the same members, types and member order,
//! values from the same sources).
//!
//! `guest-ping`, `guest-info`, `guest-sync`, `guest-sync-delimited`
//! (the exchange writes the 0xFF before the answer), `guest-get-host-name`,
//! `guest-get-osinfo`, `guest-get-timezone`, `guest-get-time`,
//! `guest-network-get-interfaces` and `guest-get-users`.

mod info;
mod interfaces;
mod order;
mod osinfo;
mod timezone;
mod users;

use guestward_sdk::qga::{self, Arguments};
use guestward_sdk::{Command, Reply, Request, export_command, files};
use serde_json::{Value, json};

pub struct Qga;

impl Command for Qga {
    const NAMES: &'static [&'static str] = &[
        "qga:guest-ping",
        "qga:guest-info",
        "qga:guest-sync",
        "qga:guest-sync-delimited",
        "qga:guest-get-host-name",
        "qga:guest-get-osinfo",
        "qga:guest-get-timezone",
        "qga:guest-get-time",
        "qga:guest-network-get-interfaces",
        "qga:guest-get-users",
    ];
    const SUMMARY: &'static str = "Answer the QEMU guest agent's read-only commands (ping, info, sync, host name, OS, time zone, time, interfaces, users)";
    const ASKS: &'static str = include_str!("../policy.toml");

    fn handle(request: Request<'_>) -> Reply {
        match answer(&request) {
            Ok(value) => Reply::ok(order::to_json(&value)),
            Err(reply) => reply,
        }
    }
}

export_command!(Qga);

/// The `return` value of one request, or the error reply.
fn answer(request: &Request<'_>) -> Result<Value, Reply> {
    let mut arguments = Arguments::of(request)?;
    let execute = qga::execute_name(request);
    if matches!(execute, "guest-sync" | "guest-sync-delimited") {
        let id: i64 = arguments.required("id")?;
        arguments.finish()?;
        return Ok(json!(id));
    }
    // Every other command here takes no arguments.
    arguments.finish()?;
    match execute {
        "guest-ping" => Ok(json!({})),
        "guest-info" => Ok(info::guest_info()),
        "guest-get-host-name" => host_name(),
        "guest-get-osinfo" => Ok(osinfo::guest_osinfo()),
        "guest-get-timezone" => timezone::guest_timezone(),
        "guest-get-time" => Ok(json!(now_nanoseconds())),
        "guest-network-get-interfaces" => interfaces::guest_interfaces(),
        "guest-get-users" => users::guest_users(),
        other => Err(qga::error(
            qga::ErrorClass::CommandNotFound,
            format!("The command {other} has not been found"),
        )),
    }
}

/// gethostname(2): the UTS name, which the kernel also shows here.
fn host_name() -> Result<Value, Reply> {
    let name = read_text("/proc/sys/kernel/hostname")
        .map_err(|error| qga::generic_error(format!("cannot get hostname: {}", error.text())))?;
    Ok(json!({ "host-name": name.trim_end_matches('\n') }))
}

/// Nanoseconds since the epoch, with qemu-ga's microsecond resolution
/// (`g_get_real_time() * 1000`).
fn now_nanoseconds() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_micros())
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

/// A whole file as text (invalid UTF-8 replaced).
fn read_text(path: &str) -> Result<String, files::Error> {
    files::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests;
