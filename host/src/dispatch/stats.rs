//! Per-command counters for `guestward status`: calls, failures, timeouts,
//! the last call's duration and the 99th percentile of recent ones.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::Reply;
use crate::runtime::Outcome;

/// Durations kept per command for the percentile: the recent calls, so a
/// slow start is forgotten and memory stays bounded.
const RECENT_CALLS: usize = 1000;

/// The counters of every command that has been called.
#[derive(Debug, Default)]
pub struct CallStats {
    commands: Mutex<HashMap<String, Counters>>,
}

#[derive(Debug, Default)]
struct Counters {
    calls: u64,
    failures: u64,
    timeouts: u64,
    recent: VecDeque<Duration>,
}

/// One command's counters, as `status` shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommandSummary {
    pub calls: u64,
    /// Calls whose reply was not a success (any return code but `0`/`D0`).
    pub failures: u64,
    /// Calls stopped at their deadline (counted among the failures too).
    pub timeouts: u64,
    pub last_ms: f64,
    /// Over the last calls (at most 1000).
    pub p99_ms: f64,
}

impl CallStats {
    /// Count one call of `command` that took `took` and ended so.
    pub fn record(&self, command: &str, reply: &Reply, outcome: Outcome, took: Duration) {
        let mut commands = self.commands.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let counters = commands.entry(command.to_owned()).or_default();
        counters.calls += 1;
        counters.failures += u64::from(!reply.is_success());
        counters.timeouts += u64::from(outcome == Outcome::Deadline);
        if counters.recent.len() == RECENT_CALLS {
            counters.recent.pop_front();
        }
        counters.recent.push_back(took);
    }

    /// Every command's counters, by name.
    pub fn summary(&self) -> BTreeMap<String, CommandSummary> {
        let commands = self.commands.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        commands
            .iter()
            .map(|(command, counters)| (command.clone(), counters.summary()))
            .collect()
    }
}

impl Counters {
    fn summary(&self) -> CommandSummary {
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        CommandSummary {
            calls: self.calls,
            failures: self.failures,
            timeouts: self.timeouts,
            last_ms: millis(self.recent.back().copied().unwrap_or_default()),
            p99_ms: millis(percentile(&sorted, 99)),
        }
    }
}

/// The nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], rank: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = (sorted.len() * rank).div_ceil(100).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_timeouts_and_the_99th_percentile_are_counted_per_command() {
        let stats = CallStats::default();
        for ms in 1..=200 {
            stats.record("version", &Reply::ok("1"), Outcome::Replied, Duration::from_millis(ms));
        }
        stats.record(
            "password",
            &Reply::error("no"),
            Outcome::Replied,
            Duration::from_millis(5),
        );
        let deadline = Reply::error("command 'password' did not finish within its deadline of 1 ms");
        stats.record("password", &deadline, Outcome::Deadline, Duration::from_millis(9));
        stats.record(
            "password",
            &Reply::new("D0", "k"),
            Outcome::Replied,
            Duration::from_millis(3),
        );
        let summary = stats.summary();
        let version = &summary["version"];
        assert_eq!((version.calls, version.failures, version.timeouts), (200, 0, 0));
        assert_eq!((version.last_ms, version.p99_ms), (200.0, 198.0));
        let password = &summary["password"];
        assert_eq!((password.calls, password.failures, password.timeouts), (3, 2, 1));
        assert_eq!((password.last_ms, password.p99_ms), (3.0, 9.0));
    }

    #[test]
    fn only_the_recent_calls_make_the_percentile() {
        let stats = CallStats::default();
        stats.record("c", &Reply::ok(""), Outcome::Replied, Duration::from_secs(60));
        for _ in 0..RECENT_CALLS {
            stats.record("c", &Reply::ok(""), Outcome::Replied, Duration::from_millis(2));
        }
        let summary = &stats.summary()["c"];
        assert_eq!(summary.calls, RECENT_CALLS as u64 + 1);
        assert_eq!(summary.p99_ms, 2.0, "the slow first call has left the window");
    }
}
