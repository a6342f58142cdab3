//! The one retry delay every controller uses: exponential in the number of consecutive
//! failures, from a base to a cap, as a pure function (controllers keep the failure count; a
//! success resets it).

use std::time::Duration;

/// The delay before retry number `failures` (1-based; 0 counts as 1): `base`, doubled for each
/// failure after the first, at most `cap`. A `base` above `cap` is honoured as it is: a retry
/// interval configured longer than the cap is never shortened.
pub fn backoff(base: Duration, cap: Duration, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_the_base_to_the_cap_and_never_overflows() {
        let (base, cap) = (Duration::from_secs(2), Duration::from_secs(300));
        let got: Vec<u64> = [0, 1, 2, 3, 8, 9, 31, 32, 40, u32::MAX].map(|n| backoff(base, cap, n).as_secs()).into();
        assert_eq!(got, [2, 2, 4, 8, 256, 300, 300, 300, 300, 300]);
    }

    #[test]
    fn a_base_above_the_cap_is_kept() {
        let (base, cap) = (Duration::from_secs(90), Duration::from_secs(60));
        assert_eq!([1, 5, u32::MAX].map(|n| backoff(base, cap, n)), [base; 3]);
        assert_eq!(backoff(Duration::ZERO, cap, 7), Duration::ZERO);
    }
}
