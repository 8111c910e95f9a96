//! What a fuzz run found and counted: findings (each written as a
//! reproducer), the progress line and the summary.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::input::{FuzzInput, Reproducer};
use super::sandbox::Execution;
use crate::runtime::Outcome;

/// Why an execution is a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// The sandbox stopped the component (trap, panic, deadline, memory,
    /// stack, exit) or refused its reply (size, return code).
    Fault(Outcome),
    /// The reply's protocol text does not decode to the reply.
    InvalidProtocolReply,
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fault(fault) => f.write_str(fault.name()),
            Self::InvalidProtocolReply => f.write_str("invalid-protocol-reply"),
        }
    }
}

/// Why `execution` is a finding, if it is.
pub fn classify(execution: &Execution) -> Option<FindingKind> {
    if execution.outcome != Outcome::Replied {
        return Some(FindingKind::Fault(execution.outcome));
    }
    if !super::sandbox::is_valid_reply(&execution.encoded, &execution.reply) {
        return Some(FindingKind::InvalidProtocolReply);
    }
    None
}

/// A finding, once per kind and reply shape.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: FindingKind,
    pub command: String,
    pub reply: String,
    /// Where its reproducer was written.
    pub reproducer: PathBuf,
}

/// Counts of a run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub executions: u64,
    /// Inputs the protocol refused before any component ran.
    pub refused_by_protocol: u64,
    /// Replies that report a refused grant.
    pub grant_refusals: u64,
    /// Executions per return code.
    pub codes: BTreeMap<String, u64>,
    pub corpus: usize,
    pub findings: Vec<Finding>,
    pub elapsed: Duration,
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.executions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The progress line (stderr, while it runs).
    pub fn progress_line(&self) -> String {
        format!(
            "fuzz: {} execs, {:.0}/s, {} findings, corpus {}, {} grant refusals",
            self.executions,
            self.per_second(),
            self.findings.len(),
            self.corpus,
            self.grant_refusals
        )
    }
}

impl fmt::Display for Stats {
    /// The summary at the end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "executions: {} in {:.1} s ({:.0}/s)",
            self.executions,
            self.elapsed.as_secs_f64(),
            self.per_second()
        )?;
        let codes: Vec<String> = self.codes.iter().map(|(code, n)| format!("{code}: {n}")).collect();
        writeln!(f, "return codes: {}", codes.join(", "))?;
        writeln!(f, "refused by the protocol: {}", self.refused_by_protocol)?;
        writeln!(f, "grant refusals (counted, not failures): {}", self.grant_refusals)?;
        writeln!(f, "corpus: {} inputs", self.corpus)?;
        writeln!(f, "findings: {}", self.findings.len())?;
        for finding in &self.findings {
            writeln!(
                f,
                "  {} in {}: {} (replay: guestward run --replay {})",
                finding.kind,
                finding.command,
                finding.reply.chars().take(200).collect::<String>(),
                finding.reproducer.display()
            )?;
        }
        Ok(())
    }
}

/// Write a reproducer for `input` into `dir` (created if needed); its name
/// says what was found.
pub fn write_reproducer(
    dir: &Path,
    reproducer: &Reproducer,
    kind: FindingKind,
    command: &str,
    number: usize,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|error| anyhow::anyhow!("cannot create {}: {error}", dir.display()))?;
    let path = dir.join(format!("{command}-{kind}-{number}.json"));
    let text = serde_json::to_string_pretty(reproducer)?;
    std::fs::write(&path, text).map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
    Ok(path)
}

/// What tells two findings apart: their kind and their reply without
/// numbers (a panic at another offset is the same panic).
pub fn finding_signature(kind: FindingKind, command: &str, reply: &str) -> String {
    format!("{kind} {command} {}", shape(reply))
}

/// `message` without digits, shortened: a reply's shape, for the corpus'
/// novelty test.
pub fn shape(message: &str) -> String {
    message.chars().filter(|ch| !ch.is_ascii_digit()).take(96).collect()
}

/// The input that a reproducer holds: the command made explicit.
pub fn pinned(input: &FuzzInput, command: &str) -> FuzzInput {
    FuzzInput {
        command: Some(command.to_owned()),
        ..input.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Reply, nova};

    fn execution(reply: Reply, outcome: Outcome) -> Execution {
        Execution {
            command: Some("c".into()),
            encoded: nova::encode(&reply),
            reply,
            outcome,
            refused: Vec::new(),
        }
    }

    #[test]
    fn faults_and_bad_encodings_are_findings_and_error_replies_are_not() {
        assert_eq!(
            classify(&execution(Reply::error("Couldn't decode"), Outcome::Replied)),
            None
        );
        assert_eq!(
            classify(&execution(Reply::error("x"), Outcome::Panic)),
            Some(FindingKind::Fault(Outcome::Panic))
        );
        let mut broken = execution(Reply::ok("a"), Outcome::Replied);
        broken.encoded = "{\"message\": \"b\", \"returncode\": \"0\"}".into();
        assert_eq!(classify(&broken), Some(FindingKind::InvalidProtocolReply));
    }

    #[test]
    fn signatures_ignore_numbers() {
        let kind = FindingKind::Fault(Outcome::Panic);
        assert_eq!(
            finding_signature(kind, "c", "index 3 out of range"),
            finding_signature(kind, "c", "index 42 out of range")
        );
    }
}
