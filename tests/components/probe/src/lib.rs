//! `probe`: a command component for the tests. It calls every host
//! interface on request, and misbehaves on request (loops, exhausts its
//! memory, panics, floods the log, replies too much), so that the tests can
//! check what the sandbox allows and how it fails.
//!
//! Each command takes a JSON value; file and XenStore errors come back as
//! `500` with the error's debug text, so that tests can tell them apart.

use guestward_sdk::{
    Command, Reply, Request, agent, download, export_command, files, log, programs, qga, state, xenstore,
};
use serde_json::Value;

pub struct Probe;

impl Command for Probe {
    const NAMES: &'static [&'static str] = &[
        "echo",
        "count",
        "spin",
        "grow",
        "panic",
        "recurse",
        "exit",
        "sleep",
        "big-reply",
        "log-flood",
        "read-file",
        "write-file",
        "list-dir",
        "metadata",
        "read-link",
        "remove",
        "mkdir",
        "rename",
        "xs-read",
        "xs-dir",
        "bad-code",
        "lock",
        "lock-many",
        "chmod",
        "run",
        "setting",
        "fetch",
        // QGA commands: answer the arguments back, answer nothing, fail
        // with the class asked for, answer after a pause.
        "qga:probe-echo",
        "qga:probe-silent",
        "qga:probe-fail",
        "qga:probe-sleep",
        "qga:probe-disabled",
    ];
    const SUMMARY: &'static str = "Test probe: exercises host interfaces and sandbox limits";

    fn handle(request: Request<'_>) -> Reply {
        let value = request.json().unwrap_or(Value::Null);
        let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let string = || value.as_str().unwrap_or_default().to_owned();
        match request.name() {
            "echo" => Reply::ok(request.raw_value()),
            "qga:probe-echo" => qga::ok(value),
            "qga:probe-silent" => qga::no_response(),
            "qga:probe-fail" => Reply::new(text("class"), text("desc")),
            "qga:probe-sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(value["ms"].as_u64().unwrap_or(0)));
                qga::ok(serde_json::json!({}))
            }
            "qga:probe-disabled" => qga::ok(serde_json::json!(agent::disabled_commands())),
            "count" => count(),
            "spin" => spin(),
            "grow" => grow(),
            "panic" => panic!("probe panicked on request"),
            "recurse" => Reply::ok(recurse(value.as_u64().unwrap_or(u64::MAX)).to_string()),
            "exit" => std::process::exit(3),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(value.as_u64().unwrap_or(0)));
                Reply::ok("slept")
            }
            "big-reply" => Reply::ok("x".repeat(value.as_u64().unwrap_or(0) as usize)),
            "log-flood" => {
                for line in 0..value.as_u64().unwrap_or(0) {
                    log::log(log::Level::Info, &format!("flood line {line}"));
                }
                Reply::ok("flooded")
            }
            "read-file" => files::read(&string())
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .into_reply(),
            "write-file" => write_file(&value),
            "list-dir" => files::list_dir(&string())
                .map(|entries| {
                    entries
                        .iter()
                        .map(|entry| entry.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .into_reply(),
            "metadata" => files::metadata(&string())
                .map(|meta| {
                    format!(
                        "{:?} {:o} {}:{} {}",
                        meta.kind, meta.mode, meta.uid, meta.gid, meta.size
                    )
                })
                .into_reply(),
            "read-link" => files::read_link(&string()).into_reply(),
            "remove" => files::remove(&string()).map(|()| String::new()).into_reply(),
            "mkdir" => files::create_dir(&text("path"), None, value["recursive"].as_bool().unwrap_or(false))
                .map(|()| String::new())
                .into_reply(),
            "rename" => files::rename(&text("from"), &text("to"))
                .map(|()| String::new())
                .into_reply(),
            "xs-read" => xenstore::read(&string()).into_reply(),
            "xs-dir" => xenstore::directory(&string()).map(|keys| keys.join(",")).into_reply(),
            "bad-code" => Reply::new("", "no code"),
            "lock" => hold_lock(&value),
            "lock-many" => lock_many(&value),
            "chmod" => files::set_permissions(
                &text("path"),
                value["mode"].as_u64().map(|mode| mode as u32),
                owner(&value),
            )
            .map(|()| String::new())
            .into_reply(),
            "run" => run(&value),
            "fetch" => download::fetch(&text("url"), value["max"].as_u64().unwrap_or(u64::MAX))
                .map(|body| {
                    format!(
                        "{} bytes: {}",
                        body.len(),
                        String::from_utf8_lossy(&body[..body.len().min(40)])
                    )
                })
                .into_reply(),
            "setting" => Reply::ok(agent::setting(&string()).unwrap_or_else(|| "<unset>".to_owned())),
            other => Reply::error(format!("probe does not know {other}")),
        }
    }
}

/// Results become replies: the value on success, the error's debug text on failure.
trait IntoReply {
    fn into_reply(self) -> Reply;
}

impl<E: std::fmt::Debug> IntoReply for Result<String, E> {
    fn into_reply(self) -> Reply {
        match self {
            Ok(message) => Reply::ok(message),
            Err(error) => Reply::error(format!("{error:?}")),
        }
    }
}

/// A counter kept in the host's state store: each call gets the next number.
fn count() -> Reply {
    let current = state::get("count")
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(0);
    let next = current + 1;
    match state::set("count", next.to_string().as_bytes(), None) {
        Ok(()) => Reply::ok(next.to_string()),
        Err(error) => Reply::error(format!("{error:?}")),
    }
}

fn spin() -> Reply {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn grow() -> Reply {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&blocks);
    }
}

fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    1 + recurse(std::hint::black_box(depth - 1))
}

fn write_file(value: &Value) -> Reply {
    let options = files::ReplaceOptions {
        mode: value["mode"].as_u64().map(|mode| mode as u32),
        owner: owner(value),
        backup_suffix: value["backup"].as_str().map(str::to_owned),
        create_parents: value["parents"].as_bool().unwrap_or(false),
    };
    let path = value["path"].as_str().unwrap_or_default();
    let contents = value["contents"].as_str().unwrap_or_default();
    files::replace(path, contents.as_bytes(), &options)
        .map(|()| String::new())
        .into_reply()
}

/// `{"uid": …, "gid": …}` in the request, if it names an owner.
fn owner(value: &Value) -> Option<files::Owner> {
    Some(files::Owner {
        uid: value["uid"].as_u64()? as u32,
        gid: value["gid"].as_u64()? as u32,
    })
}

/// Lock `count` files `<dir>/lock-<n>` at once, holding all of them, until
/// the host refuses: reply with how many it got and why it stopped.
fn lock_many(value: &Value) -> Reply {
    let dir = value["dir"].as_str().unwrap_or_default();
    let mut held = Vec::new();
    for n in 0..value["count"].as_u64().unwrap_or(0) {
        match files::lock(&format!("{dir}/lock-{n}"), 0) {
            Ok(lock) => held.push(lock),
            Err(error) => return Reply::error(format!("held {} locks, then {error:?}", held.len())),
        }
    }
    Reply::ok(format!("held {} locks", held.len()))
}

/// Take a lock, hold it for `hold-ms`, and release it.
fn hold_lock(value: &Value) -> Reply {
    let path = value["path"].as_str().unwrap_or_default();
    let timeout = value["timeout-ms"].as_u64().unwrap_or(0) as u32;
    match files::lock(path, timeout) {
        Ok(_lock) => {
            std::thread::sleep(std::time::Duration::from_millis(value["hold-ms"].as_u64().unwrap_or(0)));
            Reply::ok("locked")
        }
        Err(error) => Reply::error(format!("{error:?}")),
    }
}

/// Run `argv` with `stdin` (and `timeout-ms`, if given); reply with the
/// exit code and output.
fn run(value: &Value) -> Reply {
    let argv: Vec<String> = value["argv"]
        .as_array()
        .map(|args| args.iter().filter_map(|arg| arg.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let Some((program, args)) = argv.split_first() else {
        return Reply::error("no argv");
    };
    let stdin = value["stdin"].as_str().unwrap_or_default();
    // Arguments after "--secret" are passed as secrets.
    let mut secret = false;
    let args: Vec<programs::Argument> = args
        .iter()
        .filter_map(|arg| {
            if arg == "--secret" {
                secret = true;
                return None;
            }
            Some(if secret {
                programs::Argument::Secret(arg.clone())
            } else {
                programs::Argument::Plain(arg.clone())
            })
        })
        .collect();
    let options = programs::RunOptions {
        timeout_ms: value["timeout-ms"].as_u64().map(|ms| ms.try_into().unwrap_or(u32::MAX)),
    };
    match programs::run(program, &args, stdin.as_bytes(), options) {
        Ok(output) => Reply::ok(format!(
            "exit={:?} stdout={}",
            output.exit_code,
            String::from_utf8_lossy(&output.stdout)
        )),
        Err(error) => Reply::error(format!("{error:?}")),
    }
}

export_command!(Probe);
