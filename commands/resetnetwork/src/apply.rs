//! Applying a plan safely: the new files are checked by the programs that
//! will read them, and everything the plan changes is read first, so that
//! a bad file or a read that fails stops the command before anything
//! changes; each file is replaced atomically; and if a file cannot be
//! written or a required program fails, every file goes back to what it
//! was and the programs run again to bring the previous configuration up.
//!
//! Time: the sandbox stops the command wherever it is at the call's
//! deadline (55 s under the built-in policy, inside Nova's 60; whatever the
//! operator sets). So every program has a timeout, and they all share a
//! budget, taken from the time the host says is left, that keeps time to
//! restore.

use std::time::{Duration, Instant};

use guestward_sdk::{agent, files, hostname, log, programs};

use crate::plan::{Check, Plan, Step, Write};

/// The longest one program may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Of the time left when the command starts, the tenths after which no
/// program applying the new configuration is started (38.5 s of 55)...
const APPLY_TENTHS: u32 = 7;
/// ...and after which none bringing the previous one back up is (49.5 s
/// of 55), leaving the rest to put the files back and answer.
const RESTORE_TENTHS: u32 = 9;

/// When programs must stop being started, measured from the start.
#[derive(Debug, Clone, Copy)]
struct Budget {
    started: Instant,
    apply: Duration,
    restore: Duration,
}

impl Budget {
    /// The budget of a call with `remaining` time left.
    fn of(remaining: Duration) -> Self {
        Self {
            started: Instant::now(),
            apply: remaining * APPLY_TENTHS / 10,
            restore: remaining * RESTORE_TENTHS / 10,
        }
    }

    /// Time for one program applying the new configuration.
    fn for_applying(&self) -> Option<Duration> {
        self.left_until(self.apply)
    }

    /// Time for one program bringing the previous configuration back.
    fn for_restoring(&self) -> Option<Duration> {
        self.left_until(self.restore)
    }

    /// The time left until `limit`, at most [`STEP_TIMEOUT`]; `None` when
    /// too little is left to start a program.
    fn left_until(&self, limit: Duration) -> Option<Duration> {
        limit
            .checked_sub(self.started.elapsed())
            .filter(|left| *left >= Duration::from_millis(500))
            .map(|left| left.min(STEP_TIMEOUT))
    }
}

/// One file's change, and what it was before.
struct Change<'a> {
    path: &'a str,
    /// Contents and permission bits before; `None` if it did not exist.
    previous: Option<(Vec<u8>, u32)>,
    /// What it becomes; `None` to remove it.
    next: Option<&'a Write>,
}

pub fn apply(plan: &Plan, hostname: &str) -> Result<(), String> {
    let budget = Budget::of(Duration::from_millis(agent::remaining_ms().into()));
    for check in &plan.checks {
        run_check(check, &budget)?;
    }
    let changes = changes(plan)?;
    for step in &plan.before {
        if let Err(why) = run(step, &[], budget.for_applying()) {
            log::log(log::Level::Info, &format!("ignored: {why}"));
        }
    }
    let previous_hostname = running_hostname();
    hostname::set(hostname).map_err(|error| format!("Couldn't set hostname: {}", error.text()))?;
    for (index, change) in changes.iter().enumerate() {
        if let Err(error) = change.apply() {
            restore(&changes[..index]);
            restore_hostname(previous_hostname.as_deref(), hostname);
            return Err(format!("{error}; the previous configuration was restored"));
        }
    }
    for step in &plan.apply {
        let Err(why) = run(step, &[], budget.for_applying()) else {
            continue;
        };
        let Some(failure) = step.failure else {
            log::log(log::Level::Info, &format!("ignored: {why}"));
            continue;
        };
        restore(&changes);
        restore_hostname(previous_hostname.as_deref(), hostname);
        for step in &plan.apply {
            let _ = run(step, &[], budget.for_restoring());
        }
        return Err(format!("{failure}: {why}; the previous configuration was restored"));
    }
    Ok(())
}

/// Where the running system's hostname is read (under `--root`, the
/// root's copy, usually absent).
const RUNNING_HOSTNAME: &str = "/proc/sys/kernel/hostname";

/// The running hostname, to set back if the change is rolled back; `None`
/// when it cannot be read (then it is left as set, and the log says so).
fn running_hostname() -> Option<String> {
    match crate::current::read(RUNNING_HOSTNAME) {
        Ok(Some(text)) => Some(text.trim().to_owned()).filter(|name| !name.is_empty()),
        Ok(None) => None,
        Err(why) => {
            log::log(log::Level::Warn, &format!("the running hostname is unknown: {why}"));
            None
        }
    }
}

/// Set the running hostname back to `previous` after a rollback.
fn restore_hostname(previous: Option<&str>, set: &str) {
    let Some(previous) = previous.filter(|previous| *previous != set) else {
        return;
    };
    if let Err(error) = hostname::set(previous) {
        log::log(
            log::Level::Error,
            &format!("could not set the hostname back to {previous}: {}", error.text()),
        );
    }
}

/// Write the check's scratch files, run its program, remove what it was
/// given and what it made.
fn run_check(check: &Check, budget: &Budget) -> Result<(), String> {
    check.remove.iter().for_each(|path| remove_tree(path));
    let outcome = write_scratch(check).and_then(|()| run_checker(check, budget));
    check.remove.iter().for_each(|path| remove_tree(path));
    outcome
}

fn write_scratch(check: &Check) -> Result<(), String> {
    for scratch in &check.scratch {
        replace(&scratch.path, scratch.contents.as_bytes(), scratch.mode)?;
    }
    Ok(())
}

fn run_checker(check: &Check, budget: &Budget) -> Result<(), String> {
    match run(&check.step, check.stdin.as_bytes(), budget.for_applying()) {
        Ok(()) => Ok(()),
        Err(failed) if check.cannot_check.is_some() && failed.exit_code == check.cannot_check => {
            log::log(log::Level::Warn, &format!("not checked: {failed}"));
            Ok(())
        }
        Err(failed) => Err(format!("{}: {failed}", check.step.failure.unwrap_or("Check failed"))),
    }
}

/// Remove `path` and, if it is a directory, everything under it (a
/// symlink is removed, not followed); what cannot be removed is logged.
fn remove_tree(path: &str) {
    let kind = match crate::current::kind(path) {
        Ok(Some(kind)) => kind,
        Ok(None) => return,
        Err(why) => return log::log(log::Level::Warn, &why),
    };
    if kind == files::FileKind::Directory {
        match crate::current::list(path) {
            Ok(names) => names.iter().for_each(|name| remove_tree(&format!("{path}/{name}"))),
            Err(why) => log::log(log::Level::Warn, &why),
        }
    }
    if let Err(error) = files::remove(path) {
        log::log(log::Level::Warn, &format!("could not remove {path}: {}", error.text()));
    }
}

/// The plan's changes, unchanged files left out.
fn changes(plan: &Plan) -> Result<Vec<Change<'_>>, String> {
    let mut changes = Vec::new();
    for write in &plan.writes {
        let previous = snapshot(&write.path)?;
        if previous
            .as_ref()
            .is_some_and(|(contents, _)| contents == write.contents.as_bytes())
        {
            continue;
        }
        changes.push(Change {
            path: &write.path,
            previous,
            next: Some(write),
        });
    }
    for path in &plan.removes {
        if let Some(previous) = snapshot(path)? {
            changes.push(Change {
                path,
                previous: Some(previous),
                next: None,
            });
        }
    }
    Ok(changes)
}

fn snapshot(path: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
    let contents = match files::read(path) {
        Ok(contents) => contents,
        Err(files::Error::NotFound(_)) => return Ok(None),
        Err(error) => return Err(describe(path, &error)),
    };
    let mode = files::metadata(path)
        .map(|metadata| metadata.mode & 0o7777)
        .unwrap_or(0o644);
    Ok(Some((contents, mode)))
}

impl Change<'_> {
    fn apply(&self) -> Result<(), String> {
        match self.next {
            Some(write) => replace(self.path, write.contents.as_bytes(), write.mode),
            None => files::remove(self.path).map_err(|error| describe(self.path, &error)),
        }
    }
}

fn replace(path: &str, contents: &[u8], mode: u32) -> Result<(), String> {
    let options = files::ReplaceOptions {
        mode: Some(mode),
        owner: None,
        backup_suffix: None,
        create_parents: true,
    };
    files::replace(path, contents, &options).map_err(|error| describe(path, &error))
}

/// Put every changed file back as it was, in reverse order.
fn restore(changes: &[Change<'_>]) {
    for change in changes.iter().rev() {
        let restored = match &change.previous {
            Some((contents, mode)) => replace(change.path, contents, *mode),
            None => files::remove(change.path).map_err(|error| describe(change.path, &error)),
        };
        if let Err(error) = restored {
            log::log(
                log::Level::Error,
                &format!("could not restore {}: {error}", change.path),
            );
        }
    }
}

fn describe(path: &str, error: &files::Error) -> String {
    match error {
        files::Error::NotGranted(text) => format!("Not allowed to change {path}: {text}"),
        other => format!("{path}: {}", other.text()),
    }
}

/// How a step failed: its exit code if it ran and exited, and what to say
/// (exit code, not wait status; the first line of its error output).
#[derive(Debug)]
struct Failed {
    exit_code: Option<i32>,
    text: String,
}

impl From<String> for Failed {
    fn from(text: String) -> Self {
        Self { exit_code: None, text }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.text)
    }
}

/// Run one step within `time` (`None`: no time left to start it).
fn run(step: &Step, stdin: &[u8], time: Option<Duration>) -> Result<(), Failed> {
    let (program, args) = step.argv.split_first().ok_or_else(|| "empty command".to_owned())?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let shown = step.argv.join(" ");
    let time = time.ok_or_else(|| format!("{shown}: not started, out of time"))?;
    let timeout_ms = u32::try_from(time.as_millis()).unwrap_or(u32::MAX);
    let options = programs::RunOptions {
        timeout_ms: Some(timeout_ms),
    };
    let output = programs::run(program, &programs::plain(&args), stdin, options)
        .map_err(|error| format!("{shown}: {}", error.text()))?;
    let detail = || {
        let stderr = String::from_utf8_lossy(&output.stderr);
        match stderr.lines().map(str::trim).find(|line| !line.is_empty()) {
            Some(line) => format!(" ({})", line.chars().take(200).collect::<String>()),
            None => String::new(),
        }
    };
    match (output.exit_code, output.signal) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(Failed {
            exit_code: Some(code),
            text: format!("{shown} exited with {code}{}", detail()),
        }),
        (None, signal) => Err(format!("{shown} was killed by signal {}", signal.unwrap_or_default()).into()),
    }
}

#[cfg(test)]
mod tests {
    use guestward_sdk::testing;

    use super::*;
    use crate::render::tests::machine;

    fn plan() -> Plan {
        let mut plan = Plan::default();
        plan.write("/etc/network/interfaces", "new\n");
        plan.write("/etc/hostname", "new-host\n");
        plan.removes.push("/etc/stale".into());
        plan.before.push(Step::optional(&["/sbin/ifdown", "eth0"]));
        plan.apply
            .push(Step::required("Couldn't restart network", &["/sbin/ifup", "eth0"]));
        plan
    }

    #[test]
    fn a_good_plan_changes_everything_in_order() {
        machine(&[("/etc/network/interfaces", "old\n"), ("/etc/stale", "x")]);
        apply(&plan(), "new-host").unwrap();
        testing::with_host(|host| {
            assert_eq!(host.files["/etc/network/interfaces"], b"new\n");
            assert!(!host.files.contains_key("/etc/stale"));
            assert_eq!(host.hostname.as_deref(), Some("new-host"));
            let runs: Vec<String> = host.runs.iter().map(|(argv, _)| argv.join(" ")).collect();
            assert_eq!(runs, ["/sbin/ifdown eth0", "/sbin/ifup eth0"]);
        });
    }

    #[test]
    fn a_failed_apply_restores_every_file_and_says_what_failed() {
        machine(&[("/etc/network/interfaces", "old\n"), ("/etc/stale", "x")]);
        testing::with_host(|host| host.exit_codes.insert("/sbin/ifup".into(), 1));
        let error = apply(&plan(), "new-host").unwrap_err();
        assert_eq!(
            error,
            "Couldn't restart network: /sbin/ifup eth0 exited with 1; the previous configuration was restored"
        );
        testing::with_host(|host| {
            assert_eq!(host.files["/etc/network/interfaces"], b"old\n");
            assert_eq!(host.files["/etc/stale"], b"x");
            assert!(
                !host.files.contains_key("/etc/hostname"),
                "a file that was new is removed again"
            );
            // ifup ran again with the old file, to bring it back up.
            assert_eq!(host.runs.iter().filter(|(argv, _)| argv[0] == "/sbin/ifup").count(), 2);
        });
    }

    /// An operator who lowers `deadline-ms` lowers every program's timeout
    /// with it: the rollback still runs, before the deadline, instead of
    /// the sandbox stopping the command while the old configuration is
    /// half back.
    #[test]
    fn a_shorter_deadline_shortens_every_program_and_keeps_time_to_restore() {
        machine(&[("/etc/network/interfaces", "old\n")]);
        testing::with_host(|host| {
            host.remaining_ms = Some(3000);
            host.exit_codes.insert("/sbin/ifup".into(), 1);
        });
        let error = apply(&plan(), "new-host").unwrap_err();
        assert!(error.ends_with("the previous configuration was restored"), "{error}");
        testing::with_host(|host| {
            assert_eq!(host.files["/etc/network/interfaces"], b"old\n");
            let timeouts: Vec<(&str, u32)> = host
                .run_timeouts
                .iter()
                .map(|(program, ms)| (program.as_str(), *ms))
                .collect();
            let [("/sbin/ifdown", before), ("/sbin/ifup", apply), ("/sbin/ifup", restore)] = timeouts[..] else {
                panic!("{timeouts:?}");
            };
            assert!(before <= 2100 && apply <= 2100, "{timeouts:?}");
            assert!(restore > apply && restore <= 2700, "{timeouts:?}");
        });
    }

    /// A program killed at its timeout is reported as the daemon words it,
    /// after the command line, as when it came back as a plain failure.
    #[test]
    fn a_program_past_its_timeout_is_reported_and_rolled_back() {
        machine(&[("/etc/network/interfaces", "old\n")]);
        testing::with_host(|host| host.hanging.insert("/sbin/ifup".into()));
        let error = apply(&plan(), "new-host").unwrap_err();
        let timeout = testing::with_host(|host| {
            assert_eq!(host.files["/etc/network/interfaces"], b"old\n");
            host.run_timeouts
                .iter()
                .find(|(program, _)| program == "/sbin/ifup")
                .map(|(_, ms)| *ms)
        });
        let timeout = timeout.expect("ifup ran with a timeout");
        assert_eq!(
            error,
            format!(
                "Couldn't restart network: /sbin/ifup eth0: /sbin/ifup did not finish within {timeout} ms \
                 and was killed; the previous configuration was restored"
            )
        );
    }

    #[test]
    fn a_refused_hostname_changes_no_file_and_says_why() {
        machine(&[("/etc/network/interfaces", "old\n")]);
        testing::with_host(|host| {
            host.hostname_error = Some(hostname::Error::NotGranted(
                "component resetnetwork may not set the hostname".into(),
            ))
        });
        let error = apply(&plan(), "new-host").unwrap_err();
        assert_eq!(
            error,
            "Couldn't set hostname: component resetnetwork may not set the hostname"
        );
        testing::with_host(|host| assert_eq!(host.files["/etc/network/interfaces"], b"old\n"));
        testing::with_host(|host| {
            host.hostname_error = Some(hostname::Error::InvalidName("\"a b\" is not a valid hostname".into()))
        });
        assert_eq!(
            apply(&plan(), "a b").unwrap_err(),
            "Couldn't set hostname: \"a b\" is not a valid hostname"
        );
    }

    #[test]
    fn a_rollback_sets_the_running_hostname_back() {
        machine(&[
            ("/etc/network/interfaces", "old\n"),
            ("/proc/sys/kernel/hostname", "old-host\n"),
        ]);
        testing::with_host(|host| host.exit_codes.insert("/sbin/ifup".into(), 1));
        apply(&plan(), "new-host").unwrap_err();
        testing::with_host(|host| assert_eq!(host.hostname.as_deref(), Some("old-host")));
        // Unknown (no /proc under --root): left as set.
        machine(&[("/etc/network/interfaces", "old\n")]);
        testing::with_host(|host| host.exit_codes.insert("/sbin/ifup".into(), 1));
        apply(&plan(), "new-host").unwrap_err();
        testing::with_host(|host| assert_eq!(host.hostname.as_deref(), Some("new-host")));
    }

    #[test]
    fn a_failed_check_changes_nothing() {
        machine(&[("/etc/network/interfaces", "old\n")]);
        let mut plan = plan();
        plan.checks.push(Check::file(
            "/etc/network/check",
            "new\n",
            Step::required(
                "Invalid /etc/network/interfaces",
                &["/sbin/ifup", "--no-act", "-a", "-i", "/etc/network/check"],
            ),
        ));
        testing::with_host(|host| host.exit_codes.insert("/sbin/ifup".into(), 1));
        let error = apply(&plan, "new-host").unwrap_err();
        assert_eq!(
            error,
            "Invalid /etc/network/interfaces: /sbin/ifup --no-act -a -i /etc/network/check exited with 1"
        );
        testing::with_host(|host| {
            assert_eq!(host.files.keys().collect::<Vec<_>>(), ["/etc/network/interfaces"]);
            assert_eq!(host.files["/etc/network/interfaces"], b"old\n");
            assert_eq!(host.runs.len(), 1, "nothing else ran");
            assert!(host.hostname.is_none());
        });
    }

    #[test]
    fn a_checker_too_old_to_check_is_skipped_and_a_refusal_is_not() {
        let check = |code: i32| {
            machine(&[]);
            testing::with_host(|host| host.exit_codes.insert("/usr/bin/nmcli".into(), code));
            let mut plan = plan();
            plan.checks.push(Check {
                cannot_check: Some(2),
                ..Check::stdin(
                    "[connection]\n",
                    Step::required("Invalid connection", &["/usr/bin/nmcli", "--offline"]),
                )
            });
            let outcome = apply(&plan, "h");
            let stdin = testing::with_host(|host| host.runs[0].1.clone());
            assert_eq!(stdin, b"[connection]\n");
            outcome
        };
        check(2).unwrap();
        assert_eq!(
            check(1).unwrap_err(),
            "Invalid connection: /usr/bin/nmcli --offline exited with 1"
        );
    }

    #[test]
    fn a_checks_scratch_tree_is_removed_before_and_after() {
        machine(&[("/etc/netplan/.check/run/stale.network", "x")]);
        let mut plan = plan();
        plan.checks.push(Check {
            scratch: vec![Write {
                path: "/etc/netplan/.check/etc/netplan/a.yaml".into(),
                contents: "a\n".into(),
                mode: 0o600,
            }],
            stdin: String::new(),
            step: Step::required("Invalid netplan configuration", &["/usr/sbin/netplan", "generate"]),
            remove: vec!["/etc/netplan/.check".into()],
            cannot_check: None,
        });
        apply(&plan, "h").unwrap();
        testing::with_host(|host| {
            assert!(
                host.files.keys().all(|path| !path.starts_with("/etc/netplan/.check")),
                "{:?}",
                host.files.keys()
            );
        });
    }

    #[test]
    fn time_runs_out_before_the_deadline_does() {
        let nova = Budget::of(Duration::from_secs(55));
        assert_eq!(nova.for_applying(), Some(STEP_TIMEOUT));
        assert_eq!(nova.apply, Duration::from_millis(38_500));
        assert_eq!(nova.restore, Duration::from_millis(49_500));
        let short = Budget::of(Duration::from_secs(3));
        assert!(
            short
                .for_applying()
                .is_some_and(|left| left <= Duration::from_millis(2100))
        );
        assert!(
            short
                .for_restoring()
                .is_some_and(|left| left <= Duration::from_millis(2700))
        );
        assert_eq!(Budget::of(Duration::ZERO).for_restoring(), None);
        assert!(
            run(&Step::required("x", &["/bin/true"]), &[], None)
                .unwrap_err()
                .text
                .contains("out of time")
        );
    }

    #[test]
    fn an_optional_step_may_fail() {
        machine(&[]);
        testing::with_host(|host| host.exit_codes.insert("/sbin/ifdown".into(), 1));
        apply(&plan(), "h").unwrap();
    }
}
