//! Mutations of inputs for the driver: bit flips, interesting numbers, byte runs inserted, removed or
//! repeated, and splices of two inputs, drawn from a small seeded generator so runs repeat.

/// Makes new inputs from old ones.
#[derive(Debug, Clone)]
pub struct Mutator {
    state: u64,
}

/// Bytes that make decoders take edges: extremes of varints and lengths, brackets, quotes, zeros.
const INTERESTING: [&[u8]; 12] = [
    &[0x00],
    &[0xff],
    &[0x7f],
    &[0x80],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
    &[0x00, 0x00, 0x00, 0x00, 0x01],
    b"[",
    b"{\"",
    b"\"",
    b",",
    b"9223372036854775807",
];

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Mutator { state: seed | 1 }
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }

    /// A mutation of `input`, sometimes spliced with `other`; at most `max_len` bytes.
    pub fn mutate(&mut self, input: &[u8], other: &[u8], max_len: usize) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(out.len() + 1);
            match self.below(7) {
                0 if !out.is_empty() => {
                    let i = at.min(out.len() - 1);
                    out[i] ^= 1 << self.below(8);
                }
                1 if !out.is_empty() => {
                    let i = at.min(out.len() - 1);
                    out[i] = self.below(256) as u8;
                }
                2 => {
                    let bytes = INTERESTING[self.below(INTERESTING.len())];
                    out.splice(at..at, bytes.iter().copied());
                }
                3 if !out.is_empty() => {
                    let end = (at + 1 + self.below(16)).min(out.len());
                    out.drain(at.min(end)..end);
                }
                4 if !out.is_empty() => {
                    let start = at.min(out.len() - 1);
                    let end = (start + 1 + self.below(8)).min(out.len());
                    let run: Vec<u8> = out[start..end].to_vec();
                    for _ in 0..1 + self.below(64) {
                        out.splice(start..start, run.iter().copied());
                    }
                }
                5 if !other.is_empty() => {
                    let from = self.below(other.len());
                    let to = from + self.below(other.len() - from + 1);
                    out.splice(at..at, other[from..to].iter().copied());
                }
                _ => out.truncate(at),
            }
        }
        out.truncate(max_len);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_repeat_for_a_seed_and_stay_within_the_length() {
        let run = |seed| {
            let mut m = Mutator::new(seed);
            (0..100)
                .map(|_| m.mutate(b"{\"a\": 1}", b"[1, 2]", 64))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(9).iter().all(|m| m.len() <= 64));
    }
}
