//! `guestward fuzz`: run a component on many mutated inputs in the real
//! sandbox and report how it misbehaves.
//!
//! * [`sandbox`]: the component loaded once (one instance-pre, through the
//!   normal load pipeline), a scratch root and in-memory XenStore keys.
//! * [`input`]: one input, corpus files and reproducers.
//! * [`mutate`]: the mutations, deterministic for a seed.
//! * [`report`]: findings, counts, the progress line and the summary.
//!
//! There is no coverage feedback here (the component is compiled wasm):
//! an input joins the corpus when its reply has a shape (return code, and
//! message without digits) not seen before, which follows the command's
//! distinct answers. For coverage-guided fuzzing of a command's logic,
//! see the cargo-fuzz targets in `host/fuzz`.

pub mod input;
pub mod mutate;
pub mod report;
pub mod sandbox;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::capability::Capability;
use crate::capability::xenstore::Xenstore;
use crate::runtime::LoadedComponent;

use self::input::{FuzzInput, Reproducer};
use self::mutate::{Dictionary, Rng};
use self::report::{Finding, Stats};
use self::sandbox::Sandbox;

/// The most inputs the corpus keeps.
const MAX_CORPUS: usize = 2048;

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Runs(u64),
    Time(Duration),
}

/// What to fuzz and how.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// The command names to fuzz; empty: every name the component answers.
    pub names: Vec<String>,
    pub budget: Budget,
    pub seed: u64,
    /// Seeds, from `--corpus` (the generic ones are always added).
    pub corpus: Vec<FuzzInput>,
    /// Where reproducers are written.
    pub findings_dir: PathBuf,
    /// What reproducers name as the component and the policy.
    pub component_path: PathBuf,
    pub policy_path: Option<PathBuf>,
}

/// Values every command gets tried with.
const GENERIC_VALUES: &[&str] = &[
    "\"\"",
    "null",
    "{}",
    "[]",
    "0",
    "true",
    "\"agent\"",
    "{\"a\": [1, \"b\"]}",
];

/// Fuzz `sandbox`'s component; `progress` is called about every
/// `progress_every` with the counts so far.
pub async fn fuzz(
    sandbox: &Sandbox,
    options: &FuzzOptions,
    progress_every: Duration,
    mut progress: impl FnMut(&Stats),
) -> anyhow::Result<Stats> {
    let component = sandbox.component();
    let names = command_names(component, &options.names)?;
    let mut corpus = seeds(&options.corpus);
    let mut dictionary = granted_dictionary(component);
    corpus.iter().for_each(|input| dictionary.learn(input));

    let mut rng = Rng::new(options.seed);
    let mut stats = Stats::default();
    let mut shapes = HashSet::new();
    let mut signatures = HashSet::new();
    let started = Instant::now();
    let mut last_progress = started;
    let seed_count = corpus.len() * names.len();
    loop {
        let done = stats.executions;
        let over = match options.budget {
            Budget::Runs(runs) => done >= runs,
            Budget::Time(time) => started.elapsed() >= time,
        };
        if over {
            break;
        }
        // Every seed under every name first, as it is; then mutations.
        let (mut input, command) = if (done as usize) < seed_count {
            let index = done as usize;
            let input = corpus[index / names.len()].clone();
            let command = input
                .command
                .clone()
                .unwrap_or_else(|| names[index % names.len()].clone());
            (input, command)
        } else {
            let mut input = corpus[rng.below(corpus.len())].clone();
            mutate::mutate(&mut input, &dictionary, &mut rng);
            let command = match &input.command {
                Some(name) if names.contains(name) => name.clone(),
                _ => names[rng.below(names.len())].clone(),
            };
            (input, command)
        };
        input.command = None;
        let execution = sandbox.run(&input, &command).await?;
        stats.executions += 1;
        *stats.codes.entry(execution.reply.code.clone()).or_default() += 1;
        if execution.command.is_none() {
            stats.refused_by_protocol += 1;
        } else if !execution.refused.is_empty() {
            stats.grant_refusals += 1;
        }
        if let Some(kind) = report::classify(&execution) {
            let signature = report::finding_signature(kind, &command, &execution.reply.message);
            if signatures.insert(signature) {
                let reproducer = Reproducer {
                    component: options.component_path.clone(),
                    policy: options.policy_path.clone(),
                    finding: kind.to_string(),
                    reply: execution.reply.message.clone(),
                    input: report::pinned(&input, &command),
                };
                let number = stats.findings.len() + 1;
                let path = report::write_reproducer(&options.findings_dir, &reproducer, kind, &command, number)?;
                stats.findings.push(Finding {
                    kind,
                    command: command.clone(),
                    reply: execution.reply.message.clone(),
                    reproducer: path,
                });
            }
        } else if execution.command.is_some()
            && corpus.len() < MAX_CORPUS
            && shapes.insert(format!(
                "{command} {} {}",
                execution.reply.code,
                report::shape(&execution.reply.message)
            ))
        {
            dictionary.learn(&input);
            corpus.push(report::pinned(&input, &command));
        }
        stats.corpus = corpus.len();
        if last_progress.elapsed() >= progress_every {
            stats.elapsed = started.elapsed();
            progress(&stats);
            last_progress = Instant::now();
        }
    }
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// The names to fuzz: those asked for (each must be the component's), or
/// all of its names.
fn command_names(component: &LoadedComponent, asked: &[String]) -> anyhow::Result<Vec<String>> {
    if asked.is_empty() {
        return Ok(component.info.names.clone());
    }
    if let Some(unknown) = asked.iter().find(|name| !component.info.names.contains(name)) {
        anyhow::bail!(
            "{} does not answer {unknown} (it answers {})",
            component.name,
            component.info.names.join(", ")
        );
    }
    Ok(asked.to_vec())
}

/// The corpus' inputs, then the generic values.
fn seeds(corpus: &[FuzzInput]) -> Vec<FuzzInput> {
    let mut seeds = corpus.to_vec();
    seeds.extend(GENERIC_VALUES.iter().map(|value| FuzzInput {
        value: (*value).to_owned(),
        ..FuzzInput::default()
    }));
    seeds
}

/// The paths and XenStore prefixes `component`'s policy entry grants.
fn granted_dictionary(component: &LoadedComponent) -> Dictionary {
    let granted_paths = component
        .grants
        .files
        .iter()
        .flat_map(|grant| grant.rules.iter())
        .map(|rule| rule.path.display().to_string())
        .collect();
    let xenstore_prefixes = component
        .grants
        .xenstore
        .as_ref()
        .map(|grant| Xenstore::describe(grant))
        .unwrap_or_default()
        .into_iter()
        .filter(|prefix| !prefix.starts_with('('))
        .collect();
    Dictionary {
        words: Vec::new(),
        granted_paths,
        xenstore_prefixes,
    }
}
