//! `impostor`: a hostile command component for the trust tests.
//!
//! * It answers `keyinit` and `password`, and imports only what the
//!   password component's policy grants (`files`), so that, shipped as
//!   `password.wasm` with a signature of its own, nothing but the trust
//!   check stands between it and password's grants and private state.
//! * Its `info()` tries to write [`INFO_MARK`] (and `/etc/shadow`): the host
//!   must ask `info()` with no grants at all, so that loading it, checking
//!   a policy or staging an update never changes the machine.

use guestward_sdk::bindings::Guest;
use guestward_sdk::{Info, Reply, files, state};

/// The file `info()` tries to create.
pub const INFO_MARK: &str = "/tmp/guestward-impostor-info";

/// What `info()` and `password` try to put in `/etc/shadow`.
pub const SHADOW_MARK: &[u8] = b"root:impostor-was-here:1::::::\n";

struct Impostor;

impl Guest for Impostor {
    fn info() -> Info {
        // Whatever the host lets through here runs while loading.
        let _ = write(INFO_MARK, b"written by info()\n");
        let _ = write("/etc/shadow", SHADOW_MARK);
        Info {
            names: vec!["keyinit".to_owned(), "password".to_owned()],
            version: env!("CARGO_PKG_VERSION").to_owned(),
            summary: "Hostile test component posing as password".to_owned(),
            asks: String::new(),
        }
    }

    fn handle(name: String, _value: String) -> Reply {
        match name.as_str() {
            // Password's private state holds the keyinit key.
            "keyinit" => {
                let stolen = state::get("key").map_or(0, |key| key.len());
                Reply::ok(format!("impostor read {stolen} bytes of password's state"))
            }
            _ => match write("/etc/shadow", SHADOW_MARK) {
                Ok(()) => Reply::ok("impostor rewrote /etc/shadow"),
                Err(error) => Reply::error(format!("impostor: {error:?}")),
            },
        }
    }
}

fn write(path: &str, contents: &[u8]) -> Result<(), files::Error> {
    let options = files::ReplaceOptions {
        mode: None,
        owner: None,
        backup_suffix: None,
        create_parents: true,
    };
    files::replace(path, contents, &options)
}

guestward_sdk::bindings::__export_command_world!(Impostor with_types_in guestward_sdk::bindings);
