//! The tests' one random number generator: xorshift64*, fast and
//! reproducible from its seed (print the seed; replaying it replays the
//! run). Not for anything secret. tests/fuzz.rs includes this file with
//! `#[path]`: the fuzz crate (fuzz/) that cargo-bolero instruments builds
//! it alone, without this crate's servers and OpenSSL.

// fuzz.rs's copy uses only part of it.
#![allow(dead_code)]

/// xorshift64*.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (0 is taken as 1: xorshift must not start at 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next number. (Not `Iterator::next`: the sequence never ends.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// True once in `one_in` draws, on average.
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}
