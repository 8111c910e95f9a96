//! The crate command authors depend on.
//!
//! A command is a plain trait implementation plus one macro call:
//!
//! ```ignore
//! use guestward_sdk::{Command, Reply, Request, agent, export_command};
//!
//! struct Version;
//!
//! impl Command for Version {
//!     const NAMES: &'static [&'static str] = &["version"];
//!     const SUMMARY: &'static str = "Report the agent's version";
//!     // The grants it asks for, in policy syntax: nothing beyond the
//!     // always-granted log, state and agent. A command that needs more
//!     // keeps them in a policy.toml: include_str!("../policy.toml").
//!     const ASKS: &'static str = "";
//!
//!     fn handle(_request: Request<'_>) -> Reply {
//!         Reply::ok(agent::version())
//!     }
//! }
//!
//! export_command!(Version);
//! ```
//!
//! # Building and testing
//!
//! Build with `cargo build --profile wasm --target wasm32-wasip2` (the
//! `wasm` profile of the crate's `Cargo.toml`, shown in the project's
//! `docs/authors.md`, keeps components small): the result,
//! `target/wasm32-wasip2/wasm/<crate>.wasm`, is a component the daemon
//! loads under the name of the file's stem. Try it in the real sandbox
//! with `guestward run <crate>.wasm <command> --root DIR`.
//!
//! The same code compiles natively, where the host interfaces are served
//! by the [`testing`] host: plain `cargo test` runs the command under its
//! own policy entry ([`testing::load_asks`]), with the daemon's grants,
//! limits and error texts, against fixture files and XenStore keys, with
//! injected faults. `guestward new NAME` makes a crate set up this way.
//!
//! # The host interfaces
//!
//! One module per WIT interface, under the same names: [`log`], [`state`]
//! and [`agent`] are always granted; [`files`], [`xenstore`],
//! [`programs`], [`hostname`], [`network`], [`download`] and [`update`] are
//! each granted by the policy key of their name. In a component they are
//! the WIT imports; natively, the [`testing`] host's functions of the same
//! signatures.
//!
//! # Versions
//!
//! The WIT this crate is built from, `guestward:command@1.1.0`, ships inside
//! it (`wit/command.wit`). The rule: **SDK `1.x` targets
//! `guestward:command@1.x`**. The SDK's major version is the WIT's; its
//! minor version is at least the WIT minor it carries, so a new WIT minor
//! (which only adds interfaces and functions) comes with a new SDK minor,
//! and SDK patch releases never change the WIT. A component built with SDK
//! 1.y runs on every daemon that speaks WIT 1.y or later; one that calls
//! nothing added after 1.0 runs on every 1.x daemon. A new WIT major
//! (never planned) would be a new SDK major. [`WIT_PACKAGE`] names the
//! package this SDK carries.

/// The WIT package this SDK is built from and its components target.
pub const WIT_PACKAGE: &str = "guestward:command@1.1.0";

pub mod legacy;
pub mod qga;
mod reply;
mod request;

pub use reply::{EXCERPT_CHARS, Reply, excerpt};
pub use request::Request;

/// Generated bindings of the `guestward:command` WIT package. Command authors
/// use the modules below instead; the export macro needs this path.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all, rust_2018_idioms)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "command",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_command_world",
        default_bindings_module: "guestward_sdk::bindings",
        // So that tests can compare replies and errors with `assert_eq!`.
        additional_derives: [PartialEq, Eq],
    });
}

/// What a component says about itself (filled in by [`export_command!`]).
pub use bindings::guestward::command::types::Info;

/// A command component: the names it answers and how it answers them.
///
/// Components are instantiated afresh for every call, so nothing in Rust
/// statics survives between calls; keep what must survive in [`state`].
pub trait Command {
    /// The request names this component answers.
    const NAMES: &'static [&'static str];
    /// One line describing the component.
    const SUMMARY: &'static str;
    /// The grants the component asks for: the body of its
    /// `[component.<name>]` policy entry, in the policy file's TOML syntax
    /// (`files = [{ path = "/etc/hostname", access = "read-write" }]`,
    /// `programs = [["/sbin/ifup", "*"]]`, `xenstore = ["vm-data/networking"]`,
    /// `download = ["https://example.com/"]`, `hostname = true`,
    /// `network = true`, `update = true`, `freeze = true`). Empty: nothing beyond `log`,
    /// `state` and `agent`, which every component has. Keep it in a
    /// `policy.toml` next to `Cargo.toml` and write
    /// `const ASKS: &'static str = include_str!("../policy.toml");`.
    ///
    /// Only the operator's policy grants anything: `guestward inspect`
    /// prints this as a ready policy entry, and `guestward policy check`
    /// says where a policy grants more or less.
    const ASKS: &'static str = "";

    /// Answer one request.
    fn handle(request: Request<'_>) -> Reply;
}

/// What `info` answers for `C`, whose crate's version is `version`. Used by
/// [`export_command!`].
#[doc(hidden)]
pub fn info<C: Command>(version: &str) -> Info {
    Info {
        names: C::NAMES.iter().map(|name| (*name).to_owned()).collect(),
        version: version.to_owned(),
        summary: C::SUMMARY.to_owned(),
        asks: C::ASKS.to_owned(),
    }
}

/// Export a [`Command`] implementation as the component's `info` and
/// `handle`. The component's version is the calling crate's version.
#[macro_export]
macro_rules! export_command {
    ($command:ty) => {
        const _: () = {
            struct GuestwardExport;

            impl $crate::bindings::Guest for GuestwardExport {
                fn info() -> $crate::Info {
                    $crate::info::<$command>(env!("CARGO_PKG_VERSION"))
                }

                fn handle(name: String, value: String) -> $crate::Reply {
                    <$command as $crate::Command>::handle($crate::Request::new(&name, &value))
                }
            }

    $crate::bindings::__export_command_world!(GuestwardExport with_types_in $crate::bindings);
        };
    };
}

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

/// Host interfaces as the command sees them: in a component they are the
/// WIT imports; natively they are served by [`testing`].
macro_rules! host_interface {
    (
        $(#[$doc:meta])* $module:ident {
            types: [$($ty:ident),*],
            functions: [$($function:ident),*]
            $(, error_cases: [$($case:ident),*])?
            $(, extra: { $($extra:item)* })?
        }
    ) => {
        $(#[$doc])*
        pub mod $module {
            $(pub use crate::bindings::guestward::command::$module::$ty;)*
            #[cfg(target_arch = "wasm32")]
            pub use crate::bindings::guestward::command::$module::{$($function),*};
            #[cfg(not(target_arch = "wasm32"))]
            pub use crate::testing::$module::{$($function),*};
            $(
                impl Error {
                    /// The host's explanation, whatever the case (it names
                    /// the path, key, program or URL concerned).
                    pub fn text(&self) -> &str {
                        match self {
                            $(Self::$case(text))|* => text,
                        }
                    }
                }
            )?
            $($($extra)*)?
        }
    };
}

host_interface!(
    /// Structured log lines (always granted). Never log secrets.
    log { types: [Level], functions: [log] }
);
host_interface!(
    /// A small key-value store in host memory, kept between calls (always granted).
    state { types: [Error], functions: [get, set, delete], error_cases: [TooLarge] }
);
host_interface!(
    /// Facts about the agent: its version, its loaded commands, the
    /// operator's settings for this component, the time left in this
    /// call, and the commands the operator turned off (always granted).
    agent { types: [], functions: [version, commands, setting, remaining_ms, disabled_commands] }
);
host_interface!(
    /// Files under the path prefixes the policy grants.
    files {
        types: [Error, FileKind, FileMetadata, DirEntry, Owner, ReplaceOptions],
        functions: [read, list_dir, metadata, read_link, replace, remove, create_dir, rename, set_permissions],
        error_cases: [NotGranted, InvalidPath, NotFound, AlreadyExists, NotADirectory, IsADirectory, TooLarge, Io],
        extra: {
            /// An exclusive lock on a file (see [`lock`]), released when dropped.
            #[must_use = "the lock is released as soon as it is dropped"]
            #[derive(Debug)]
            pub struct Lock {
                #[cfg(target_arch = "wasm32")]
                _held: crate::bindings::guestward::command::files::FileLock,
                #[cfg(not(target_arch = "wasm32"))]
                _held: (),
            }

            /// Take the lock `lckpwdf(3)` takes (an exclusive `fcntl` lock)
            /// on `path`, creating it if missing, waiting at most `timeout_ms`.
            pub fn lock(path: &str, timeout_ms: u32) -> Result<Lock, Error> {
                #[cfg(target_arch = "wasm32")]
                return Ok(Lock {
                    _held: crate::bindings::guestward::command::files::lock(path, timeout_ms)?,
                });
                #[cfg(not(target_arch = "wasm32"))]
                {
                    crate::testing::files::lock(path, timeout_ms)?;
                    Ok(Lock { _held: () })
                }
            }
        }
    }
);
host_interface!(
    /// XenStore keys under the prefixes the policy grants (read-only).
    xenstore {
        types: [Error],
        functions: [read, directory],
        error_cases: [NotGranted, InvalidKey, NotFound, PermissionDenied, Unavailable]
    }
);
host_interface!(
    /// Running programs whose argument lists the policy grants (`programs =
    /// [[...], ...]`), each with an optional timeout.
    programs {
        types: [Argument, Error, ProgramOutput, RunOptions],
        functions: [run],
        error_cases: [NotGranted, Failed, TimedOut],
        extra: {
            /// No timeout of its own: the call's deadline is the only bound.
            impl Default for RunOptions {
                fn default() -> Self {
                    Self { timeout_ms: None }
                }
            }

            /// Plain (loggable) arguments.
            pub fn plain(args: &[&str]) -> Vec<Argument> {
                args.iter().map(|arg| Argument::Plain((*arg).to_owned())).collect()
            }
        }
    }
);
host_interface!(
    /// The running system's hostname (`hostname = true`).
    hostname {
        types: [Error],
        functions: [set],
        error_cases: [NotGranted, InvalidName, Failed]
    }
);
host_interface!(
    /// The machine's network interfaces, read-only (`network = true`):
    /// names, MACs and state; and (WIT 1.1.0) every interface with its IP
    /// addresses and counters.
    network {
        types: [Error, NetworkInterface, InterfaceDetails, IpAddress, IpAddressType, InterfaceStatistics],
        functions: [interfaces, addresses],
        error_cases: [NotGranted, Failed]
    }
);
host_interface!(
    /// Fetching over HTTP(S) from the URL prefixes the policy grants.
    download {
        types: [Error],
        functions: [fetch],
        error_cases: [NotGranted, TooLarge, Failed]
    }
);
host_interface!(
    /// Handing signed components to the daemon to install (`agentupdate`,
    /// `update = true`).
    update {
        types: [ComponentFile, Error],
        functions: [install],
        error_cases: [NotGranted, Refused, Unavailable, Failed]
    }
);
host_interface!(
    /// Freezing and thawing filesystems for consistent snapshots
    /// (`freeze = true`); the daemon holds the freeze between calls.
    freeze {
        types: [Error, FreezeStatus],
        functions: [status, freeze, thaw],
        error_cases: [NotGranted, AlreadyFrozen, Failed]
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    struct Asking;

    impl Command for Asking {
        const NAMES: &'static [&'static str] = &["ask", "asked"];
        const SUMMARY: &'static str = "Asks for the hostname";
        const ASKS: &'static str = "hostname = true\n";

        fn handle(_request: Request<'_>) -> Reply {
            Reply::ok("")
        }
    }

    struct Modest;

    impl Command for Modest {
        const NAMES: &'static [&'static str] = &["modest"];
        const SUMMARY: &'static str = "Asks for nothing";

        fn handle(_request: Request<'_>) -> Reply {
            Reply::ok("")
        }
    }

    /// The version rule: this SDK names the package its WIT declares.
    #[test]
    fn the_wit_package_is_the_one_the_sdk_names() {
        let wit = include_str!("../wit/command.wit");
        assert!(wit.contains(&format!("\npackage {WIT_PACKAGE};\n")), "{WIT_PACKAGE}");
        let (major, minor) = (env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"));
        let wit_version = WIT_PACKAGE.rsplit('@').next().unwrap_or_default();
        let mut parts = wit_version.split('.');
        assert_eq!(parts.next(), Some(major), "SDK major = WIT major");
        let wit_minor: u32 = parts.next().unwrap_or_default().parse().unwrap();
        assert!(minor.parse::<u32>().unwrap() >= wit_minor, "SDK minor >= WIT minor");
    }

    #[test]
    fn info_carries_the_names_version_summary_and_asks() {
        let asking = info::<Asking>("1.2.3");
        assert_eq!(asking.names, ["ask", "asked"]);
        assert_eq!(asking.version, "1.2.3");
        assert_eq!(asking.summary, "Asks for the hostname");
        assert_eq!(asking.asks, "hostname = true\n");
        assert_eq!(
            info::<Modest>("1").asks,
            "",
            "a component asks for nothing unless it says so"
        );
    }
}
