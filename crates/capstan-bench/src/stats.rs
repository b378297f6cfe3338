//! Summaries of samples: percentiles and medians.

use std::time::Duration;

/// The nearest-rank percentile `q` (0.0..=1.0) of `sorted` (ascending): the smallest sample with at
/// least `q` of all samples at or below it. `None` when there are no samples.
pub(crate) fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

/// Milliseconds of a duration, for printing.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50 and p99 in milliseconds of unsorted samples; zero when there are none.
pub(crate) fn p50_p99_ms(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let pick = |q| percentile(samples, q).map(ms).unwrap_or(0.0);
    (pick(0.50), pick(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let hundred: Vec<u32> = (1..=100).collect();
        let cases: [(&[u32], f64, Option<u32>); 9] = [
            (&[], 0.5, None),
            (&[7], 0.0, Some(7)),
            (&[7], 0.99, Some(7)),
            (&[1, 2], 0.5, Some(1)),
            (&[1, 2, 3], 0.5, Some(2)),
            (&hundred, 0.50, Some(50)),
            (&hundred, 0.99, Some(99)),
            (&hundred, 1.0, Some(100)),
            (&hundred, 0.0, Some(1)),
        ];
        for (samples, q, want) in cases {
            assert_eq!(percentile(samples, q), want, "{samples:?} q={q}");
        }
    }

    #[test]
    fn p50_p99_sorts_first() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(p50_p99_ms(&mut samples), (50.0, 99.0));
        assert_eq!(p50_p99_ms(&mut []), (0.0, 0.0));
    }
}
