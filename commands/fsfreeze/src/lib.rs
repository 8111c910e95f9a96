//! `fsfreeze`: qemu-ga's guest-fsfreeze-status, -freeze, -freeze-list and
//! -thaw, which libvirt's `domfsfreeze`/`domfsthaw` and quiesced snapshots
//! (Nova, Proxmox) send. The daemon does the freezing (the `freeze`
//! interface) and keeps the state; this component reads the arguments and
//! answers in qemu-ga's words. Off unless the operator's policy grants it
//! `freeze = true` (docs/policy.md).

use guestward_sdk::qga::{self, Arguments, ErrorClass};
use guestward_sdk::{Command, Reply, Request, export_command, freeze};

pub struct Fsfreeze;

const STATUS: &str = "qga:guest-fsfreeze-status";
const FREEZE: &str = "qga:guest-fsfreeze-freeze";
const FREEZE_LIST: &str = "qga:guest-fsfreeze-freeze-list";
const THAW: &str = "qga:guest-fsfreeze-thaw";

impl Command for Fsfreeze {
    const NAMES: &'static [&'static str] = &[STATUS, FREEZE, FREEZE_LIST, THAW];
    const SUMMARY: &'static str = "Freeze and thaw the filesystems for snapshots (QGA guest-fsfreeze-*)";
    const ASKS: &'static str = include_str!("../policy.toml");

    fn handle(request: Request<'_>) -> Reply {
        match answer(&request) {
            Ok(reply) | Err(reply) => reply,
        }
    }
}

export_command!(Fsfreeze);

fn answer(request: &Request<'_>) -> Result<Reply, Reply> {
    let mut arguments = Arguments::of(request)?;
    let mountpoints: Option<Vec<String>> = match request.name() {
        FREEZE_LIST => arguments.optional("mountpoints")?,
        _ => None,
    };
    arguments.finish()?;
    let done = match request.name() {
        STATUS => {
            return Ok(qga::ok(match freeze::status() {
                freeze::FreezeStatus::Frozen => "frozen",
                freeze::FreezeStatus::Thawed => "thawed",
            }));
        }
        FREEZE | FREEZE_LIST => freeze::freeze(mountpoints.as_deref()),
        THAW => freeze::thaw(),
        other => {
            return Err(qga::error(
                ErrorClass::CommandNotFound,
                format!("The command {other} has not been found"),
            ));
        }
    };
    done.map(qga::ok).map_err(|error| failure(request, &error))
}

/// The host's refusal in qemu-ga's words: a second freeze is refused as
/// qemu-ga refuses every command but a few while frozen.
fn failure(request: &Request<'_>, error: &freeze::Error) -> Reply {
    match error {
        freeze::Error::AlreadyFrozen(_) => qga::error(
            ErrorClass::CommandNotFound,
            format!(
                "Command {} has been disabled: the agent is in frozen state",
                qga::execute_name(request)
            ),
        ),
        other => qga::generic_error(other.text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestward_sdk::testing::{self, Fault, FaultKind};

    fn call(name: &str, value: &str) -> (String, String) {
        let reply = testing::call::<Fsfreeze>(name, value);
        (reply.code, reply.message)
    }

    fn ok(message: &str) -> (String, String) {
        ("0".to_owned(), message.to_owned())
    }

    fn generic(desc: &str) -> (String, String) {
        ("GenericError".to_owned(), desc.to_owned())
    }

    fn machine() {
        testing::reset();
        testing::load_asks::<Fsfreeze>("fsfreeze").unwrap();
        testing::with_host(|host| {
            host.mounts = ["/", "/srv", "/var/lib/db"].map(str::to_owned).to_vec();
        });
    }

    #[test]
    fn status_freeze_and_thaw_answer_as_qemu_ga() {
        machine();
        assert_eq!(call(STATUS, "{}"), ok("\"thawed\""));
        assert_eq!(call(FREEZE, "{}"), ok("3"));
        assert_eq!(call(STATUS, ""), ok("\"frozen\""));
        assert_eq!(
            testing::with_host(|host| host.frozen.clone()),
            ["/var/lib/db", "/srv", "/"]
        );
        assert_eq!(call(THAW, "{}"), ok("3"));
        assert_eq!(call(STATUS, "{}"), ok("\"thawed\""));
        // Thawing what is not frozen is not an error.
        assert_eq!(call(THAW, "{}"), ok("0"));
    }

    #[test]
    fn a_list_freezes_exactly_the_mount_points_named_and_ignores_others() {
        machine();
        let value = r#"{"mountpoints": ["/srv", "/srv", "/nonexistent", "/var/lib/db/"]}"#;
        assert_eq!(call(FREEZE_LIST, value), ok("1"));
        assert_eq!(testing::with_host(|host| host.frozen.clone()), ["/srv"]);
        assert_eq!(call(THAW, "{}"), ok("1"));
        assert_eq!(call(FREEZE_LIST, r#"{"mountpoints": []}"#), ok("0"));
        assert_eq!(call(STATUS, "{}"), ok("\"thawed\""));
        // Without the list: every filesystem, as guest-fsfreeze-freeze.
        assert_eq!(call(FREEZE_LIST, "{}"), ok("3"));
    }

    #[test]
    fn bad_arguments_get_qemu_gas_words() {
        machine();
        let cases = [
            (
                FREEZE_LIST,
                r#"{"mountpoints": "/tmp"}"#,
                "Invalid parameter type for 'mountpoints', expected: array",
            ),
            (
                FREEZE_LIST,
                r#"{"mountpoints": [1]}"#,
                "Invalid parameter type for 'mountpoints[0]', expected: string",
            ),
            (
                FREEZE_LIST,
                r#"{"mountpoints": null}"#,
                "Invalid parameter type for 'mountpoints', expected: array",
            ),
            (FREEZE, r#"{"x": 1}"#, "Parameter 'x' is unexpected"),
            (
                FREEZE,
                r#"{"mountpoints": ["/"]}"#,
                "Parameter 'mountpoints' is unexpected",
            ),
            (THAW, r#"{"x": 1}"#, "Parameter 'x' is unexpected"),
            (STATUS, r#"{"x": 1}"#, "Parameter 'x' is unexpected"),
            (STATUS, "[]", "QMP input member 'arguments' must be an object"),
        ];
        for (name, value, desc) in cases {
            assert_eq!(call(name, value), generic(desc), "{name} {value}");
        }
        assert!(testing::with_host(|host| host.frozen.is_empty()));
    }

    #[test]
    fn a_second_freeze_is_refused_as_qemu_ga_refuses_it_while_frozen() {
        machine();
        assert_eq!(call(FREEZE, "{}"), ok("3"));
        for name in [FREEZE, FREEZE_LIST] {
            let execute = name.trim_start_matches("qga:");
            assert_eq!(
                call(name, "{}"),
                (
                    "CommandNotFound".to_owned(),
                    format!("Command {execute} has been disabled: the agent is in frozen state")
                )
            );
        }
    }

    #[test]
    fn the_hosts_failure_is_the_error_description() {
        machine();
        testing::with_host(|host| {
            host.freeze_error = Some(freeze::Error::Failed(
                "failed to freeze /srv: Operation not permitted".into(),
            ));
        });
        assert_eq!(
            call(FREEZE, "{}"),
            generic("failed to freeze /srv: Operation not permitted")
        );
        machine();
        testing::with_host(|host| host.faults.push(Fault::new("freeze.thaw", FaultKind::Io)));
        assert_eq!(call(THAW, "{}").0, "GenericError");
    }

    #[test]
    fn without_the_grant_nothing_is_frozen() {
        machine();
        testing::load_policy("fsfreeze", "").unwrap();
        assert_eq!(
            call(FREEZE, "{}"),
            generic("component fsfreeze may not freeze filesystems")
        );
        assert_eq!(call(THAW, "{}"), generic("component fsfreeze may not thaw filesystems"));
        assert!(testing::with_host(|host| host.frozen.is_empty()));
    }
}
