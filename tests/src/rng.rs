//! A small xorshift generator for the crash campaigns: random enough for kill moments, no
//! dependency, and a seed that replays a run.

/// xorshift64; the seed must not be 0 (`Rng::new` makes it odd).
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value: it is made odd, so never 0).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
