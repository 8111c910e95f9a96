//! `compat`: the compatibility fixture. It calls every function of every
//! interface of `guestward:command@1.0.0`, so that its binary imports the
//! whole world as 1.0.0 defined it. Built once and kept as
//! `tests/fixtures/compat-1.0.0.wasm` (never rebuilt): every later 1.x host
//! must load it and answer these requests as the 1.0.0 host did.
//!
//! Each request does one thing with one interface. Success is code `0` with
//! the result (JSON where it has parts); a host error is code `500` with
//! `<interface>.<case>: <text>` (`programs.timed-out: ...`), so a test sees
//! that the error's case came through, not only its text.

use guestward_sdk::{
    Command, Reply, Request, agent, download, export_command, files, hostname, log, network, programs, state, update,
    xenstore,
};
use serde_json::{Value, json};

pub struct Compat;

impl Command for Compat {
    const NAMES: &'static [&'static str] = &[
        "compat-agent",
        "compat-log",
        "compat-state",
        "compat-files",
        "compat-files-write",
        "compat-read-link",
        "compat-xs-read",
        "compat-xs-dir",
        "compat-run",
        "compat-hostname",
        "compat-network",
        "compat-download",
        "compat-update",
    ];
    const SUMMARY: &'static str = "Compatibility fixture: calls every function of guestward:command@1.0.0";
    const ASKS: &'static str = include_str!("../policy.toml");

    fn handle(request: Request<'_>) -> Reply {
        let value = request.json().unwrap_or(Value::Null);
        let text = value.as_str().unwrap_or_default();
        let result = match request.name() {
            "compat-agent" => Ok(agent_facts(text)),
            "compat-log" => Ok(log_every_level(text)),
            "compat-state" => swap_state(text),
            "compat-files" => files::read(text)
                .map(|contents| String::from_utf8_lossy(&contents).into_owned())
                .map_err(failed),
            "compat-files-write" => write_files(value["dir"].as_str().unwrap_or_default()).map_err(failed),
            "compat-read-link" => files::read_link(text).map_err(failed),
            "compat-xs-read" => xenstore::read(text).map_err(failed),
            "compat-xs-dir" => xenstore::directory(text)
                .map(|children| children.join(","))
                .map_err(failed),
            "compat-run" => run(&value),
            "compat-hostname" => hostname::set(text)
                .map(|()| format!("hostname set to {text}"))
                .map_err(failed),
            "compat-network" => list_interfaces(),
            "compat-download" => fetch(&value),
            "compat-update" => install(&value),
            other => Err(format!("compat does not know {other}")),
        };
        match result {
            Ok(message) => Reply::ok(message),
            Err(message) => Reply::error(message),
        }
    }
}

/// `{"version", "remaining-ms", "commands", "setting"}`: the setting named
/// `name` (`compat` when empty), or null.
fn agent_facts(name: &str) -> String {
    let name = if name.is_empty() { "compat" } else { name };
    json!({
        "version": agent::version(),
        "remaining-ms": agent::remaining_ms(),
        "commands": agent::commands(),
        "setting": agent::setting(name),
    })
    .to_string()
}

/// `compat <level>: <message>` at each of the five levels.
fn log_every_level(message: &str) -> String {
    use log::Level;
    let levels = [
        (Level::Trace, "trace"),
        (Level::Debug, "debug"),
        (Level::Info, "info"),
        (Level::Warn, "warn"),
        (Level::Error, "error"),
    ];
    for (level, name) in levels {
        log::log(level, &format!("compat {name}: {message}"));
    }
    format!("logged {} lines", levels.len())
}

/// Store `value` under `compat` (delete it when `value` is empty):
/// `{"previous", "now"}`, each a string or null.
fn swap_state(value: &str) -> Result<String, String> {
    let read = || state::get("compat").map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let previous = read();
    if value.is_empty() {
        state::delete("compat");
    } else {
        state::set("compat", value.as_bytes(), Some(600)).map_err(failed)?;
    }
    Ok(json!({"previous": previous, "now": read()}).to_string())
}

/// Every writing function of `files`, inside `dir` (which must be
/// writable): the reply retells each step, and everything made is removed.
fn write_files(dir: &str) -> Result<String, files::Error> {
    let sub = format!("{dir}/compat");
    let first = format!("{sub}/a");
    let second = format!("{sub}/b");
    let lock_path = format!("{sub}/lock");
    files::create_dir(&sub, Some(0o750), true)?;
    let mut options = files::ReplaceOptions {
        mode: Some(0o640),
        owner: None,
        backup_suffix: None,
        create_parents: false,
    };
    files::replace(&first, b"old", &options)?;
    options.backup_suffix = Some(".bak".to_owned());
    files::replace(&first, b"compat", &options)?;
    let contents = files::read(&first)?;
    let backup = files::read(&format!("{first}.bak"))?;
    let metadata = files::metadata(&first)?;
    let names: Vec<String> = files::list_dir(&sub)?.into_iter().map(|entry| entry.name).collect();
    files::rename(&first, &second)?;
    files::set_permissions(&second, Some(0o600), None)?;
    let mode = files::metadata(&second)?.mode & 0o7777;
    drop(files::lock(&lock_path, 1000)?);
    for path in [&second, &format!("{first}.bak"), &lock_path, &sub] {
        files::remove(path)?;
    }
    Ok(format!(
        "read {}, backup {}, {} of {} bytes mode {:o}, listed {}, renamed, mode now {mode:o}, locked, removed",
        String::from_utf8_lossy(&contents),
        String::from_utf8_lossy(&backup),
        kind_name(metadata.kind),
        metadata.size,
        metadata.mode & 0o7777,
        names.join(","),
    ))
}

fn kind_name(kind: files::FileKind) -> &'static str {
    match kind {
        files::FileKind::File => "file",
        files::FileKind::Directory => "directory",
        files::FileKind::Symlink => "symlink",
        files::FileKind::Other => "other",
    }
}

/// Run `{"argv": [...], "stdin": "...", "timeout-ms": n}` (arguments after
/// `--secret` passed as secrets): `{"exit-code", "signal", "stdout",
/// "stderr"}`.
fn run(value: &Value) -> Result<String, String> {
    let argv: Vec<&str> = value["argv"]
        .as_array()
        .map(|args| args.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some((program, args)) = argv.split_first() else {
        return Err("no argv".to_owned());
    };
    let mut secret = false;
    let mut arguments = Vec::new();
    for arg in args {
        match *arg {
            "--secret" => secret = true,
            arg if secret => arguments.push(programs::Argument::Secret(arg.to_owned())),
            arg => arguments.push(programs::Argument::Plain(arg.to_owned())),
        }
    }
    let options = programs::RunOptions {
        timeout_ms: value["timeout-ms"]
            .as_u64()
            .map(|ms| u32::try_from(ms).unwrap_or(u32::MAX)),
    };
    let stdin = value["stdin"].as_str().unwrap_or_default();
    let output = programs::run(program, &arguments, stdin.as_bytes(), options).map_err(failed)?;
    Ok(json!({
        "exit-code": output.exit_code,
        "signal": output.signal,
        "stdout": String::from_utf8_lossy(&output.stdout),
        "stderr": String::from_utf8_lossy(&output.stderr),
    })
    .to_string())
}

/// `[{"name", "mac", "up"}, ...]`.
fn list_interfaces() -> Result<String, String> {
    let interfaces = network::interfaces().map_err(failed)?;
    let listed: Vec<Value> = interfaces
        .iter()
        .map(|nic| json!({"name": nic.name, "mac": nic.mac, "up": nic.up}))
        .collect();
    Ok(Value::Array(listed).to_string())
}

/// Fetch `{"url", "max"}`: `<n> bytes: <the first 40>`.
fn fetch(value: &Value) -> Result<String, String> {
    let url = value["url"].as_str().unwrap_or_default();
    let body = download::fetch(url, value["max"].as_u64().unwrap_or(u64::MAX)).map_err(failed)?;
    Ok(format!(
        "{} bytes: {}",
        body.len(),
        String::from_utf8_lossy(&body[..body.len().min(40)])
    ))
}

/// Install nothing (no value), or the one file `{"name", "wasm",
/// "signature"}` (texts): `installed; commands: a,b`.
fn install(value: &Value) -> Result<String, String> {
    let bytes = |key: &str| value[key].as_str().unwrap_or_default().as_bytes().to_vec();
    let components: Vec<update::ComponentFile> = match value["name"].as_str() {
        Some(name) => vec![update::ComponentFile {
            name: name.to_owned(),
            wasm: bytes("wasm"),
            signature: bytes("signature"),
        }],
        None => Vec::new(),
    };
    let commands = update::install(&components).map_err(failed)?;
    Ok(format!("installed; commands: {}", commands.join(",")))
}

/// A host error as `<interface>.<case>: <text>`.
trait Failure {
    fn describe(&self) -> String;
}

fn failed(error: impl Failure) -> String {
    error.describe()
}

/// [`Failure`] for an error variant: each case, by its WIT name.
macro_rules! cases {
    ($interface:literal, $error:ty { $($variant:ident => $case:literal),* $(,)? }) => {
        impl Failure for $error {
            fn describe(&self) -> String {
                let (case, text) = match self {
                    $(Self::$variant(text) => ($case, text),)*
                };
                format!("{}.{case}: {text}", $interface)
            }
        }
    };
}

cases!("state", state::Error { TooLarge => "too-large" });
cases!("files", files::Error {
    NotGranted => "not-granted",
    InvalidPath => "invalid-path",
    NotFound => "not-found",
    AlreadyExists => "already-exists",
    NotADirectory => "not-a-directory",
    IsADirectory => "is-a-directory",
    TooLarge => "too-large",
    Io => "io",
});
cases!("xenstore", xenstore::Error {
    NotGranted => "not-granted",
    InvalidKey => "invalid-key",
    NotFound => "not-found",
    PermissionDenied => "permission-denied",
    Unavailable => "unavailable",
});
cases!("programs", programs::Error {
    NotGranted => "not-granted",
    Failed => "failed",
    TimedOut => "timed-out",
});
cases!("hostname", hostname::Error {
    NotGranted => "not-granted",
    InvalidName => "invalid-name",
    Failed => "failed",
});
cases!("network", network::Error { NotGranted => "not-granted", Failed => "failed" });
cases!("download", download::Error {
    NotGranted => "not-granted",
    TooLarge => "too-large",
    Failed => "failed",
});
cases!("update", update::Error {
    NotGranted => "not-granted",
    Refused => "refused",
    Unavailable => "unavailable",
    Failed => "failed",
});

export_command!(Compat);

#[cfg(test)]
mod tests {
    use guestward_sdk::testing;

    use super::*;

    fn call(name: &str, value: Value) -> (String, String) {
        let value = if value.is_null() {
            String::new()
        } else {
            value.to_string()
        };
        let reply = Compat::handle(Request::new(name, &value));
        (reply.code, reply.message)
    }

    #[test]
    fn the_agent_facts_come_back_as_json() {
        testing::reset();
        testing::with_host(|host| {
            host.version = "1.2.3".into();
            host.commands = vec!["compat-agent".into()];
            host.remaining_ms = Some(900);
            host.settings.insert("compat".into(), "on".into());
        });
        let (code, message) = call("compat-agent", Value::Null);
        assert_eq!(code, "0");
        assert_eq!(
            serde_json::from_str::<Value>(&message).unwrap(),
            json!({"version": "1.2.3", "remaining-ms": 900, "commands": ["compat-agent"], "setting": "on"})
        );
    }

    #[test]
    fn state_is_swapped_and_deleted() {
        testing::reset();
        assert_eq!(call("compat-state", json!("a")).1, r#"{"now":"a","previous":null}"#);
        assert_eq!(call("compat-state", json!("b")).1, r#"{"now":"b","previous":"a"}"#);
        assert_eq!(call("compat-state", json!("")).1, r#"{"now":null,"previous":"b"}"#);
    }

    #[test]
    fn errors_name_their_interface_and_case() {
        testing::reset();
        testing::with_host(|host| {
            host.hanging.insert("/bin/sleep".into());
            host.hostname_error = Some(hostname::Error::InvalidName("\"a b\" is not a valid hostname".into()));
            host.install_error = Some(update::Error::Unavailable("not a daemon".into()));
        });
        let run = call("compat-run", json!({"argv": ["/bin/sleep", "5"], "timeout-ms": 100}));
        assert_eq!(
            run,
            (
                "500".into(),
                "programs.timed-out: /bin/sleep did not finish within 100 ms and was killed".into()
            )
        );
        assert_eq!(
            testing::with_host(|host| host.run_timeouts.clone()),
            [("/bin/sleep".to_owned(), 100)]
        );
        assert_eq!(
            call("compat-hostname", json!("a b")).1,
            "hostname.invalid-name: \"a b\" is not a valid hostname"
        );
        assert_eq!(call("compat-update", Value::Null).1, "update.unavailable: not a daemon");
        assert_eq!(call("compat-files", json!("/nowhere")).1, "files.not-found: /nowhere");
        assert_eq!(
            call("compat-xs-read", json!("vm-data/none")).1,
            "xenstore.not-found: vm-data/none"
        );
    }

    #[test]
    fn programs_run_with_secret_arguments_marked() {
        testing::reset();
        let (code, message) = call("compat-run", json!({"argv": ["/bin/echo", "hi", "--secret", "k3y"]}));
        assert_eq!(code, "0");
        assert_eq!(message, r#"{"exit-code":0,"signal":null,"stderr":"","stdout":""}"#);
        testing::with_host(|host| {
            assert_eq!(host.runs[0].0, ["/bin/echo", "hi", "<secret>"]);
            assert!(host.run_timeouts.is_empty(), "no timeout was asked for");
        });
    }

    #[test]
    fn interfaces_hostname_and_update_succeed_on_a_willing_host() {
        testing::reset();
        testing::with_host(|host| {
            host.interfaces = vec![network::NetworkInterface {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".into(),
                up: true,
            }]
        });
        assert_eq!(
            call("compat-network", Value::Null).1,
            r#"[{"mac":"52:54:00:12:34:56","name":"eth0","up":true}]"#
        );
        assert_eq!(call("compat-hostname", json!("web1")).1, "hostname set to web1");
        assert_eq!(
            testing::with_host(|host| host.hostname.clone()).as_deref(),
            Some("web1")
        );
        let installed = call(
            "compat-update",
            json!({"name": "x.wasm", "wasm": "\0asm", "signature": "s"}),
        );
        assert_eq!(installed, ("0".into(), "installed; commands: x.wasm".into()));
    }

    #[test]
    fn the_asks_name_every_granted_interface() {
        for key in [
            "files", "xenstore", "programs", "hostname", "network", "download", "update",
        ] {
            assert!(
                Compat::ASKS.lines().any(|line| line.starts_with(&format!("{key} = "))),
                "{key}"
            );
        }
    }
}
