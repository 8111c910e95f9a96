//! `guestward fuzz` and `guestward run --replay`: the command line over
//! [`guestward::fuzz`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use guestward::config;
use guestward::fuzz::input::{Reproducer, read_corpus};
use guestward::fuzz::report::classify;
use guestward::fuzz::sandbox::Sandbox;
use guestward::fuzz::{self, Budget, FuzzOptions};

use super::{load_policy, print_line};

/// How often the progress line is written.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// The component (`.wasm`).
    component: PathBuf,
    /// The command name to fuzz (default: every name it answers).
    name: Option<String>,
    /// Stop after N executions (default 10000).
    #[arg(long, conflicts_with = "time")]
    runs: Option<u64>,
    /// Stop after S seconds.
    #[arg(long)]
    time: Option<u64>,
    /// Seed inputs: JSON files (`{"value": "<JSON text>", "files": {…},
    /// "xenstore": {…}}`) or earlier reproducers.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// The policy whose entry and limits the component runs under
    /// (default: as `run`, with the drop-ins of /etc/guestward/policy.d).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The random seed: the same seed, component and corpus repeat a run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where reproducers of findings are written.
    #[arg(long, default_value = "fuzz-findings")]
    findings: PathBuf,
}

/// `guestward fuzz`: exit 0 only when nothing was found.
pub async fn run(args: FuzzArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.policy.as_deref(), Path::new(config::DEFAULT_POLICY_DIR))?;
    let component_path = absolute(&args.component)?;
    let sandbox = Sandbox::open(&component_path, &policy).await?;
    let corpus = match &args.corpus {
        Some(dir) => read_corpus(dir)?,
        None => Vec::new(),
    };
    let budget = match (args.runs, args.time) {
        (_, Some(seconds)) => Budget::Time(Duration::from_secs(seconds)),
        (runs, None) => Budget::Runs(runs.unwrap_or(10_000)),
    };
    let options = FuzzOptions {
        names: args.name.into_iter().collect(),
        budget,
        seed: args.seed,
        corpus,
        findings_dir: args.findings,
        component_path,
        policy_path: args.policy.as_deref().map(absolute).transpose()?,
    };
    let stats = fuzz::fuzz(&sandbox, &options, PROGRESS_EVERY, |stats| {
        let _ = writeln!(std::io::stderr(), "{}", stats.progress_line());
    })
    .await?;
    print_line(stats.to_string().trim_end());
    Ok(if stats.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `guestward run --replay FILE`: run a reproducer's input again, as the
/// fuzzer ran it; prints the reply, then what it shows (exit 1 when it is
/// a finding).
pub async fn replay(file: &Path, policy: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let reproducer = Reproducer::load(file)?;
    let policy_path = policy.or(reproducer.policy.clone());
    let policy = load_policy(policy_path.as_deref(), Path::new(config::DEFAULT_POLICY_DIR))?;
    let sandbox = Sandbox::open(&reproducer.component, &policy)
        .await
        .with_context(|| format!("cannot load {}", reproducer.component.display()))?;
    let command = match &reproducer.input.command {
        Some(command) => command.clone(),
        None => sandbox
            .component()
            .info
            .names
            .first()
            .cloned()
            .context("the component answers no command")?,
    };
    let execution = sandbox.run(&reproducer.input, &command).await?;
    print_line(&execution.encoded);
    Ok(match classify(&execution) {
        Some(kind) => {
            print_line(&format!("finding: {kind} (recorded: {})", reproducer.finding));
            ExitCode::FAILURE
        }
        None => {
            print_line(&format!("no finding (recorded: {})", reproducer.finding));
            ExitCode::SUCCESS
        }
    })
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}
