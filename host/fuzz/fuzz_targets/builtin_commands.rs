//! The built-in commands' own logic, natively and coverage-guided: one
//! command's `handle` on a fuzzed value, with fuzzed contents for the files
//! it reads, through the SDK's test host. Whatever the input, a command
//! answers (never panics) with a protocol return code.
//!
//! Input: byte 0 picks the command, then the value's text and a file's
//! contents separated by the first NUL byte.
#![no_main]

use guestward_sdk::{Command, Request, testing};
use libfuzzer_sys::fuzz_target;

/// Each command name, its handler, and the file its input meets first.
type Handler = fn(Request<'_>) -> guestward_sdk::Reply;
const COMMANDS: &[(&str, Handler, &str)] = &[
    ("keyinit", password::Password::handle, "/etc/login.defs"),
    ("password", password::Password::handle, "/etc/shadow"),
    ("injectfile", injectfile::InjectFile::handle, "/etc/passwd"),
    ("file_inject", injectfile::InjectFile::handle, "/etc/passwd"),
    ("kmsactivate", kmsactivate::KmsActivate::handle, "/etc/sysconfig/rhn/up2date"),
    ("agentupdate", agentupdate::AgentUpdate::handle, "/var/lib/guestward/update"),
    ("version", version::Version::handle, "/etc/os-release"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let (name, handle, file) = COMMANDS[usize::from(selector) % COMMANDS.len()];
    let (value, contents) = match rest.iter().position(|&byte| byte == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(value) = std::str::from_utf8(value) else { return };
    testing::reset();
    testing::with_host(|host| {
        host.files.insert(file.to_owned(), contents.to_vec());
        host.files
            .insert("/etc/redhat-release".to_owned(), b"Red Hat Enterprise Linux 9\n".to_vec());
        host.files
            .insert("/etc/shadow".to_owned(), b"root:$6$salt$hash:19000:0:99999:7:::\n".to_vec());
        host.settings.insert("account".to_owned(), "root".to_owned());
    });
    let reply = handle(Request::new(name, value));
    assert!(
        !reply.code.is_empty() && reply.code.len() <= 16 && reply.code.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{name}: invalid return code {:?}",
        reply.code
    );
});
