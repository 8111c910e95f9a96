//! `guest-shutdown` of the QEMU guest agent protocol: what libvirt sends
//! for `virsh shutdown --mode agent` and `virsh reboot --mode agent`.
//!
//! As qemu-ga on Linux, it asks the init system with
//! `/sbin/shutdown -h -P|-H|-r +0 "hypervisor initiated shutdown"` (mode
//! powerdown, the default, halt or reboot), waits for that program, and on
//! success answers nothing at all: the host learns of the shutdown from the
//! machine going down. The program runs only if the policy grants that
//! exact argument list, which the built-in policy does not: guest-shutdown
//! is off until the operator grants it (docs/policy.md). Under `--root` the
//! run is recorded, never carried out.

use guestward_sdk::{Command, Reply, Request, agent, export_command, log, programs, qga};

pub const SHUTDOWN: &str = "/sbin/shutdown";
/// The message `shutdown` broadcasts, qemu-ga's.
pub const MESSAGE: &str = "hypervisor initiated shutdown";
/// Time kept back from the call's deadline to answer after a hung program.
const MARGIN_MS: u32 = 2_000;

pub struct Shutdown;

impl Command for Shutdown {
    const NAMES: &'static [&'static str] = &["qga:guest-shutdown"];
    const SUMMARY: &'static str = "Power off, halt or reboot through the init system (QEMU guest agent)";
    const ASKS: &'static str = include_str!("../policy.toml");

    fn handle(request: Request<'_>) -> Reply {
        shutdown(&request).unwrap_or_else(|reply| reply)
    }
}

export_command!(Shutdown);

/// `shutdown`'s flag for a mode, as qemu-ga spells the modes (exactly;
/// case matters).
pub fn flag(mode: Option<&str>) -> Option<&'static str> {
    match mode {
        None | Some("powerdown") => Some("-P"),
        Some("halt") => Some("-H"),
        Some("reboot") => Some("-r"),
        Some(_) => None,
    }
}

fn shutdown(request: &Request<'_>) -> Result<Reply, Reply> {
    let mut arguments = qga::Arguments::of(request)?;
    let mode: Option<String> = arguments.optional("mode")?;
    arguments.finish()?;
    let flag = flag(mode.as_deref())
        .ok_or_else(|| qga::generic_error("mode is invalid (valid values are: halt|powerdown|reboot"))?;
    let mode = mode.as_deref().unwrap_or("powerdown");
    log::log(log::Level::Info, &format!("guest-shutdown called, mode: {mode}"));
    let options = programs::RunOptions {
        timeout_ms: Some(agent::remaining_ms().saturating_sub(MARGIN_MS).max(1)),
    };
    let output = programs::run(SHUTDOWN, &programs::plain(&["-h", flag, "+0", MESSAGE]), &[], options);
    match output {
        Ok(output) if output.exit_code == Some(0) => Ok(qga::no_response()),
        Ok(output) if output.exit_code.is_some() => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            log::log(log::Level::Error, &format!("{SHUTDOWN} failed: {}", stderr.trim()));
            Err(qga::generic_error("child process has failed to shutdown"))
        }
        Ok(_) => Err(qga::generic_error("child process has terminated abnormally")),
        Err(programs::Error::NotGranted(text)) => Err(qga::generic_error(format!(
            "guest-shutdown is off: {text} (the policy grants it; see docs/policy.md)"
        ))),
        Err(error) => {
            log::log(log::Level::Error, error.text());
            Err(qga::generic_error("child process has failed to shutdown"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestward_sdk::testing;

    const NAME: &str = "qga:guest-shutdown";

    fn call(arguments: &str) -> (String, String) {
        let reply = testing::call::<Shutdown>(NAME, arguments);
        (reply.code, reply.message)
    }

    fn runs() -> Vec<Vec<String>> {
        testing::with_host(|host| host.runs.iter().map(|(argv, _)| argv.clone()).collect())
    }

    #[test]
    fn each_mode_runs_shutdown_as_qemu_ga_does_and_answers_nothing() {
        testing::reset();
        testing::load_asks::<Shutdown>("shutdown").unwrap();
        for (arguments, flag) in [
            ("{}", "-P"),
            ("", "-P"),
            (r#"{"mode":"powerdown"}"#, "-P"),
            (r#"{"mode":"halt"}"#, "-H"),
            (r#"{"mode":"reboot"}"#, "-r"),
        ] {
            testing::with_host(|host| host.runs.clear());
            assert_eq!(call(arguments), ("0".into(), String::new()), "{arguments}");
            assert_eq!(
                runs(),
                [[SHUTDOWN, "-h", flag, "+0", MESSAGE].map(str::to_owned).to_vec()],
                "{arguments}"
            );
        }
        // The run is bounded, within the call's deadline.
        let timeouts = testing::with_host(|host| host.run_timeouts.clone());
        assert!(timeouts.iter().all(|(_, ms)| *ms > 0 && *ms < 25_000), "{timeouts:?}");
    }

    #[test]
    fn bad_modes_have_qemu_gas_words_and_run_nothing() {
        testing::reset();
        testing::load_asks::<Shutdown>("shutdown").unwrap();
        for (arguments, desc) in [
            (
                r#"{"mode":"bogus"}"#,
                "mode is invalid (valid values are: halt|powerdown|reboot",
            ),
            (
                r#"{"mode":""}"#,
                "mode is invalid (valid values are: halt|powerdown|reboot",
            ),
            (
                r#"{"mode":"Halt"}"#,
                "mode is invalid (valid values are: halt|powerdown|reboot",
            ),
            (r#"{"mode":1}"#, "Invalid parameter type for 'mode', expected: string"),
            (
                r#"{"mode":null}"#,
                "Invalid parameter type for 'mode', expected: string",
            ),
            (r#"{"mode":"halt","x":1}"#, "Parameter 'x' is unexpected"),
            ("[]", "QMP input member 'arguments' must be an object"),
        ] {
            assert_eq!(call(arguments), ("GenericError".into(), desc.into()), "{arguments}");
        }
        assert!(runs().is_empty());
    }

    #[test]
    fn a_failing_program_is_an_error_as_in_qemu_ga() {
        testing::reset();
        testing::load_asks::<Shutdown>("shutdown").unwrap();
        testing::with_host(|host| host.exit_codes.insert(SHUTDOWN.into(), 1));
        assert_eq!(
            call("{}"),
            ("GenericError".into(), "child process has failed to shutdown".into())
        );
        testing::with_host(|host| host.hanging.insert(SHUTDOWN.into()));
        assert_eq!(call("{}").1, "child process has failed to shutdown");
    }

    #[test]
    fn without_the_grant_it_says_it_is_off() {
        testing::reset();
        testing::load_policy("shutdown", "programs = []").unwrap();
        let (code, desc) = call(r#"{"mode":"reboot"}"#);
        assert_eq!(code, "GenericError");
        assert!(
            desc.starts_with("guest-shutdown is off: component shutdown may not run /sbin/shutdown"),
            "{desc}"
        );
        assert!(runs().is_empty());
    }
}
