//! Latency samples for the benchmarks: percentiles and a verdict against a
//! target. Benchmarks report; they do not fail the build on a noisy machine.

use std::time::Duration;

/// Latencies of one operation.
#[derive(Debug, Default)]
pub struct Samples {
    durations: Vec<Duration>,
}

impl Samples {
    pub fn with_capacity(count: usize) -> Self {
        Self {
            durations: Vec::with_capacity(count),
        }
    }

    pub fn push(&mut self, duration: Duration) {
        self.durations.push(duration);
    }

    /// The `fraction` quantile (0.5 = median), nearest rank.
    pub fn quantile(&self, fraction: f64) -> Duration {
        let mut sorted = self.durations.clone();
        sorted.sort();
        let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted.get(rank - 1).copied().unwrap_or_default()
    }

    /// Print p50/p99/max over the samples and whether p50 meets `target`.
    pub fn report(&self, what: &str, target_p50: Duration) {
        let p50 = self.quantile(0.5);
        let verdict = if p50 <= target_p50 { "meets" } else { "MISSES" };
        println!(
            "{what}: n={} p50={:?} p99={:?} max={:?} ({verdict} the p50 target of {:?})",
            self.durations.len(),
            p50,
            self.quantile(0.99),
            self.quantile(1.0),
            target_p50,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut samples = Samples::default();
        for micros in 1..=100 {
            samples.push(Duration::from_micros(micros));
        }
        assert_eq!(samples.quantile(0.5), Duration::from_micros(50));
        assert_eq!(samples.quantile(0.99), Duration::from_micros(99));
        assert_eq!(samples.quantile(1.0), Duration::from_micros(100));
    }
}
