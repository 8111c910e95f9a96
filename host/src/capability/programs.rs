//! `programs`: running allow-listed programs (`pwd_mkdb`, `ifup`,
//! `netplan`, ...), granted by `programs = [[...], ...]`.
//!
//! A program runs only if its whole argument list matches one of the
//! component's patterns (`*` stands for any one argument), with an empty
//! environment, `/` as its directory, and its output capped. Each program
//! gets a process group of its own, and the whole group is killed when the
//! run ends: at the call's deadline (the call's future is dropped), at its
//! timeout, and after it exits, so that nothing it started in the background
//! outlives the call (a daemon that must stay detaches with `setsid`, as
//! daemons do). Its pipes are read for a short grace after it exits, not
//! until whatever inherited them closes them. Under `--root`, runs are
//! recorded, not carried out.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use toml::Spanned;
use wasmtime::component::{HasSelf, Linker};

use super::files::MAX_PATH_BYTES;
use super::{CallInfo, Capability, Refusals, nothing_granted};
use crate::policy::{PolicyError, SectionErrors};
use crate::root::Root;
use crate::wit::programs::{self as wit, Argument, Error, ProgramOutput, RunOptions};

/// Bytes of stdout and of stderr kept from one run.
const MAX_OUTPUT: u64 = 1 << 20;

/// How long the pipes are read after the program exits, before what it
/// left running is killed (and again after that, before giving up).
const PIPE_GRACE: Duration = Duration::from_millis(200);

/// The `programs` capability: runs programs on the agent's root (or records
/// them under `--root`).
#[derive(Debug)]
pub struct Programs {
    root: Arc<Root>,
}

impl Programs {
    /// Programs run on (or, for a `--root` directory, recorded in) `root`.
    pub fn new(root: Arc<Root>) -> Self {
        Self { root }
    }
}

/// The argument lists a component may run, program first.
#[derive(Debug, PartialEq, Eq)]
pub struct ProgramsGrant {
    patterns: Vec<Vec<String>>,
}

impl ProgramsGrant {
    /// True when `argv` matches a pattern: same length, each argument equal
    /// or matched by `*`.
    fn allows(&self, argv: &[String]) -> bool {
        self.patterns.iter().any(|pattern| {
            pattern.len() == argv.len() && pattern.iter().zip(argv).all(|(want, got)| want == "*" || want == got)
        })
    }
}

/// One call's program runs.
#[derive(Debug)]
pub struct CallPrograms {
    grant: Option<Arc<ProgramsGrant>>,
    root: Arc<Root>,
    component: String,
    refusals: Refusals,
}

impl Capability for Programs {
    const NAME: &'static str = "programs";
    /// Argument lists, program (an absolute path) first.
    type Config = Vec<Spanned<Vec<String>>>;
    type Grant = ProgramsGrant;
    type CallState = CallPrograms;

    fn grant(
        patterns: Vec<Spanned<Vec<String>>>,
        errors: &SectionErrors<'_>,
    ) -> Result<Option<ProgramsGrant>, PolicyError> {
        let patterns = patterns
            .into_iter()
            .map(|pattern| {
                check_pattern(pattern.get_ref())
                    .map_err(|message| errors.at(pattern.span().start, message))
                    .map(|()| pattern.into_inner())
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(ProgramsGrant { patterns }))
    }

    /// A program may write anywhere its user may.
    fn writes_files(grant: &ProgramsGrant) -> bool {
        !grant.patterns.is_empty()
    }

    fn describe(grant: &ProgramsGrant) -> Vec<String> {
        nothing_granted(
            grant.patterns.iter().map(|pattern| pattern.join(" ")).collect(),
            "program",
        )
    }

    fn call_state(&self, grant: Option<&Arc<ProgramsGrant>>, call: &CallInfo<'_>) -> CallPrograms {
        CallPrograms {
            grant: grant.cloned(),
            root: self.root.clone(),
            component: call.component.to_owned(),
            refusals: call.refusals.clone(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallPrograms,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallPrograms>>(linker, get)
    }
}

/// A program pattern: a program given by absolute path, then arguments.
fn check_pattern(pattern: &[String]) -> Result<(), String> {
    match pattern.first() {
        None => Err("an empty program pattern".to_owned()),
        Some(program) if !program.starts_with('/') => Err(format!("{program:?}: programs are given by absolute path")),
        Some(program) if program == "*" || program.contains("..") => Err(format!("{program:?}: not a program path")),
        Some(_) => Ok(()),
    }
}

impl wit::Host for CallPrograms {
    async fn run(
        &mut self,
        program: String,
        args: Vec<Argument>,
        stdin: Vec<u8>,
        options: RunOptions,
    ) -> Result<ProgramOutput, Error> {
        let timeout = options.timeout_ms.map(|ms| Duration::from_millis(u64::from(ms)));
        let outcome = self.run_program(program, args, stdin, timeout).await;
        self.refusals.watch(Programs::NAME, outcome)
    }
}

impl CallPrograms {
    /// Check the grant, then run (or, under `--root`, record) the program.
    async fn run_program(
        &mut self,
        program: String,
        args: Vec<Argument>,
        stdin: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<ProgramOutput, Error> {
        // First, and without quoting it: error texts may end up in the
        // component's reply, which has a size limit.
        if program.len() > MAX_PATH_BYTES {
            let text = format!(
                "a program path is at most {MAX_PATH_BYTES} bytes, not {}",
                program.len()
            );
            return Err(Error::Failed(text));
        }
        // What is recorded: secret arguments redacted.
        let shown: Vec<String> = std::iter::once(program.clone())
            .chain(args.iter().map(|arg| match arg {
                Argument::Plain(text) => text.clone(),
                Argument::Secret(_) => "<redacted>".to_owned(),
            }))
            .collect();
        let argv: Vec<String> = std::iter::once(program)
            .chain(args.into_iter().map(|arg| match arg {
                Argument::Plain(text) | Argument::Secret(text) => text,
            }))
            .collect();
        if !self.grant.as_ref().is_some_and(|grant| grant.allows(&argv)) {
            return Err(Error::NotGranted(format!(
                "component {} may not run {} with these arguments",
                self.component, argv[0]
            )));
        }
        // Arguments may carry secrets (an activation key): log the program only.
        tracing::info!(component = self.component, program = argv[0], "running a program");
        if self.root.records_changes() {
            return self.record(&shown, stdin.len());
        }
        match timeout {
            // Dropping the run kills the program (kill_on_drop).
            Some(limit) => tokio::time::timeout(limit, run(&argv, stdin))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::TimedOut(format!(
                        "{} did not finish within {} ms and was killed",
                        argv[0],
                        limit.as_millis()
                    )))
                }),
            None => run(&argv, stdin).await,
        }
    }

    fn record(&self, argv: &[String], stdin_bytes: usize) -> Result<ProgramOutput, Error> {
        let entry = serde_json::json!({
            "action": "run",
            "component": self.component,
            "argv": argv,
            "stdin-bytes": stdin_bytes,
        });
        self.root
            .record(&entry)
            .map_err(|error| Error::Failed(format!("cannot record the run: {error}")))?;
        Ok(ProgramOutput {
            exit_code: Some(0),
            signal: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }
}

async fn run(argv: &[String], stdin: Vec<u8>) -> Result<ProgramOutput, Error> {
    let failed = |what: &str, error: std::io::Error| Error::Failed(format!("{}: {what}: {error}", argv[0]));
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| failed("cannot start", error))?;
    let group = ProcessGroup::of(&child);
    let (input, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = {
        let mut reading = std::pin::pin!(async {
            tokio::join!(capped(stdout, &mut out), capped(stderr, &mut err));
        });
        let mut running = std::pin::pin!(async { tokio::join!(feed(input, stdin), child.wait()).1 });
        let mut pipes_closed = false;
        let status = tokio::select! {
            status = &mut running => status,
            () = &mut reading => {
                pipes_closed = true;
                running.await
            }
        };
        // Exited: whatever it left in the background may hold the pipes.
        if !pipes_closed && tokio::time::timeout(PIPE_GRACE, &mut reading).await.is_err() {
            group.kill();
            let _ = tokio::time::timeout(PIPE_GRACE, &mut reading).await;
        }
        status
    };
    drop(group);
    let status = status.map_err(|error| failed("cannot wait for it", error))?;
    Ok(ProgramOutput {
        exit_code: status.code(),
        signal: status.signal(),
        stdout: out,
        stderr: err,
    })
}

/// A program's process group, killed (SIGKILL) when this is dropped: when
/// the run ends, however it ends.
struct ProcessGroup(Option<rustix::process::Pid>);

impl ProcessGroup {
    /// The group `child` leads (it was started with `process_group(0)`).
    fn of(child: &tokio::process::Child) -> Self {
        Self(child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)))
    }

    fn kill(&self) {
        if let Some(group) = self.0 {
            // ESRCH: every process of the group has already exited.
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Write the program's input and close it. A program that does not read
/// its input is not an error.
async fn feed(input: Option<tokio::process::ChildStdin>, stdin: Vec<u8>) {
    if let Some(mut input) = input {
        let _ = input.write_all(&stdin).await;
    }
}

/// Keep at most [`MAX_OUTPUT`] bytes of a stream in `kept`; the rest is
/// read and dropped so that the program never blocks on a full pipe.
async fn capped(stream: Option<impl AsyncRead + Unpin>, kept: &mut Vec<u8>) {
    let Some(mut stream) = stream else { return };
    let _ = (&mut stream).take(MAX_OUTPUT).read_to_end(kept).await;
    let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(patterns: &[&[&str]]) -> ProgramsGrant {
        ProgramsGrant {
            patterns: patterns
                .iter()
                .map(|p| p.iter().map(|s| s.to_string()).collect())
                .collect(),
        }
    }

    #[test]
    fn patterns_are_read_and_programs_need_absolute_paths() {
        let policy = crate::capability::Policy::parse(
            "[component.p]\nprograms = [[\"/usr/sbin/pwd_mkdb\", \"-p\", \"/etc/master.passwd\"], [\"/sbin/ifup\", \"*\"]]\n",
            "test",
        )
        .unwrap();
        let grant = policy.component("p").grants.programs.unwrap();
        assert_eq!(grant.patterns[1], ["/sbin/ifup", "*"]);
        let error = crate::capability::Policy::parse("[component.p]\nprograms = [[\"ifup\"]]\n", "p.toml").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        assert!(error.message.contains("absolute path"), "{error}");
    }

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argument_lists_must_match_a_pattern_exactly() {
        let grant = grant(&[
            &["/usr/sbin/pwd_mkdb", "-p", "/etc/master.passwd"],
            &["/sbin/ifup", "*"],
        ]);
        assert!(grant.allows(&argv(&["/usr/sbin/pwd_mkdb", "-p", "/etc/master.passwd"])));
        assert!(grant.allows(&argv(&["/sbin/ifup", "eth0"])));
        assert!(!grant.allows(&argv(&["/sbin/ifup"])));
        assert!(!grant.allows(&argv(&["/sbin/ifup", "eth0", "--force"])));
        assert!(!grant.allows(&argv(&["/usr/sbin/pwd_mkdb", "/etc/master.passwd"])));
        assert!(!grant.allows(&argv(&["/bin/sh", "-c", "id"])));
    }

    #[tokio::test]
    async fn programs_run_with_an_empty_environment_and_their_input() {
        let output = run(&argv(&["/usr/bin/env"]), Vec::new()).await.unwrap();
        assert_eq!((output.exit_code, output.stdout.as_slice()), (Some(0), &b""[..]));
        let output = run(&argv(&["/bin/cat"]), b"fed".to_vec()).await.unwrap();
        assert_eq!(output.stdout, b"fed");
        let output = run(&argv(&["/bin/sh", "-c", "exit 3"]), Vec::new()).await.unwrap();
        assert_eq!(output.exit_code, Some(3));
        assert!(run(&argv(&["/nonexistent"]), Vec::new()).await.is_err());
    }

    /// Whether process `pid` stops running within a second (a zombie
    /// waiting for its reaper does not run).
    async fn gone_soon(pid: &str) -> bool {
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
        };
        for _ in 0..100 {
            if !running() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn background_children_neither_hold_the_call_nor_outlive_it() {
        let started = std::time::Instant::now();
        let output = run(&argv(&["/bin/sh", "-c", "sleep 300 & echo $!"]), Vec::new())
            .await
            .unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the call waited for the background child's pipes"
        );
        assert_eq!(output.exit_code, Some(0));
        let pid = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        assert!(!pid.is_empty());
        assert!(gone_soon(&pid).await, "the background sleep {pid} outlived the call");
    }

    #[tokio::test]
    async fn a_killed_program_takes_its_background_children_with_it() {
        let mut call = CallPrograms {
            grant: Some(Arc::new(grant(&[&["/bin/sh", "-c", "*"]]))),
            root: Arc::new(Root::host().unwrap()),
            component: "test".into(),
            refusals: Refusals::default(),
        };
        let pid_file = tempfile::NamedTempFile::new().unwrap();
        let script = format!("sleep 300 & echo $! > {}; wait", pid_file.path().display());
        let error = wit::Host::run(
            &mut call,
            "/bin/sh".into(),
            vec![Argument::Plain("-c".into()), Argument::Plain(script)],
            Vec::new(),
            RunOptions { timeout_ms: Some(300) },
        )
        .await
        .unwrap_err();
        assert!(matches!(error, Error::TimedOut(_)), "{error:?}");
        let pid = std::fs::read_to_string(pid_file.path()).unwrap().trim().to_owned();
        assert!(
            gone_soon(&pid).await,
            "the background sleep {pid} outlived the killed program"
        );
    }

    #[tokio::test]
    async fn a_program_past_its_timeout_is_killed_and_reported() {
        let mut call = CallPrograms {
            grant: Some(Arc::new(grant(&[&["/bin/sleep", "*"]]))),
            root: Arc::new(Root::host().unwrap()),
            component: "test".into(),
            refusals: Refusals::default(),
        };
        let started = std::time::Instant::now();
        let error = wit::Host::run(
            &mut call,
            "/bin/sleep".into(),
            vec![Argument::Plain("30".into())],
            Vec::new(),
            RunOptions { timeout_ms: Some(100) },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&error, Error::TimedOut(text) if text == "/bin/sleep did not finish within 100 ms and was killed"),
            "{error:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        let output = wit::Host::run(
            &mut call,
            "/bin/sleep".into(),
            vec![Argument::Plain("0".into())],
            Vec::new(),
            RunOptions {
                timeout_ms: Some(10_000),
            },
        )
        .await
        .unwrap();
        assert_eq!(output.exit_code, Some(0));
    }
}
