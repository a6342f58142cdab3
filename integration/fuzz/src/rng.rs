//! A small deterministic generator (xorshift64*): the same `--seed` gives the same inputs, and
//! each worker derives its own stream so threads never share state.

/// xorshift64* (Vigna): fast, good enough to pick mutations, never zero.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`; the seed is mixed first so that nearby seeds give unrelated streams.
    pub fn new(seed: u64) -> Self {
        Self(splitmix(seed) | 1)
    }

    /// The generator of worker `index` of a run seeded with `seed`.
    pub fn for_worker(seed: u64, target: &str, index: usize) -> Self {
        Self::new(seed ^ fnv1a(target.as_bytes()) ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0); the modulo bias is irrelevant at these sizes.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A size in `1..=max` whose logarithm is uniform: small sizes are common, the largest rare.
    pub fn log_size(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let cap = 1usize << self.below(bits as usize + 1);
        (1 + self.below(cap)).min(max)
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// SplitMix64's finaliser.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bits: names crash files after their content.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream_and_workers_differ() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::for_worker(7, "review", 0);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::for_worker(7, "review", 0);
                move |_| r.next_u64()
            })
            .collect();
        let c = Rng::for_worker(7, "review", 1).next_u64();
        assert_eq!(a, b);
        assert_ne!(a[0], c);
    }

    #[test]
    fn log_sizes_stay_in_range() {
        let mut r = Rng::new(1);
        assert!((0..10_000).map(|_| r.log_size(100_000)).all(|n| (1..=100_000).contains(&n)));
    }
}
