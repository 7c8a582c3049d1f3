//! Philox4x32-10 counter-based RNG, shared by init and dropout on every device.
//!
//! Philox (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) maps a 128-bit
//! counter and a 64-bit key to 128 random bits with no state, so a GPU thread can draw element e's
//! dropout bit without knowing about any other element. The constants are Random123's.

/// Which dropout mask: Philox keyed by seed; counter from step, tensor id and element index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u64,
    pub step: u32,
    pub tensor: u32,
}

pub(crate) const M0: u32 = 0xD251_1F53;
pub(crate) const M1: u32 = 0xCD9E_8D57;
pub(crate) const W0: u32 = 0x9E37_79B9;
pub(crate) const W1: u32 = 0xBB67_AE85;

/// Counter word 3 of the init stream (dropout uses the tensor id there instead).
const INIT_TAG: u32 = 0xA11CE;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

#[inline(always)]
fn round(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo(M0, ctr[0]);
    let (hi1, lo1) = mulhilo(M1, ctr[2]);
    [hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0]
}

/// Philox4x32 with 10 rounds (the Random123 default).
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for r in 0..10 {
        if r > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        c = round(c, k);
    }
    c
}

/// Lanes of [`philox4x32_10_lanes`].
pub const PHILOX_LANES: usize = 16;

/// [`philox4x32_10`] of 16 counters at once, structure of arrays: counter l is
/// `[c0[l], c1[l], c2, c3]` (words 2 and 3 shared, as in dropout), all under one key; returns the
/// four output words per lane, `out[w][l]`. The same integer operations lane by lane, so it equals
/// the scalar function exactly; written so the loops over lanes vectorise (32×32→64-bit products
/// of 16 lanes are two AVX-512 `vpmuludq` each).
#[inline(always)]
pub fn philox4x32_10_lanes(
    c0: [u32; PHILOX_LANES],
    c1: [u32; PHILOX_LANES],
    c2: u32,
    c3: u32,
    key: [u32; 2],
) -> [[u32; PHILOX_LANES]; 4] {
    let mut c = [c0, c1, [c2; PHILOX_LANES], [c3; PHILOX_LANES]];
    let mut k = key;
    for r in 0..10 {
        if r > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let mut n = [[0u32; PHILOX_LANES]; 4];
        for l in 0..PHILOX_LANES {
            let p0 = M0 as u64 * c[0][l] as u64;
            let p1 = M1 as u64 * c[2][l] as u64;
            n[0][l] = (p1 >> 32) as u32 ^ c[1][l] ^ k[0];
            n[1][l] = p1 as u32;
            n[2][l] = (p0 >> 32) as u32 ^ c[3][l] ^ k[1];
            n[3][l] = p0 as u32;
        }
        c = n;
    }
    c
}

/// The top 24 bits of x as a float in [0, 1): (x >> 8) · 2⁻²⁴ (exact in f32).
#[inline(always)]
pub fn unit_f32(x: u32) -> f32 {
    (x >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// The Philox counter and key that hold dropout element e's draw (lane e % 4 of the output).
#[inline(always)]
pub fn dropout_counter(key: DropoutKey, e: u64) -> ([u32; 4], [u32; 2]) {
    let g = e / 4;
    (
        [g as u32, (g >> 32) as u32, key.step, key.tensor],
        [key.seed as u32, (key.seed >> 32) as u32],
    )
}

/// The uniform in [0, 1) that decides dropout element e: kept iff it is ≥ p.
#[inline]
pub fn dropout_uniform(key: DropoutKey, e: u64) -> f32 {
    let (ctr, k) = dropout_counter(key, e);
    unit_f32(philox4x32_10(ctr, k)[(e % 4) as usize])
}

/// A sequential generator for initialisation: draw i comes from Philox counter
/// [i lo, i hi, stream, 0xA11CE] under key = seed, four u32 per counter, used in order.
#[derive(Clone, Debug)]
pub struct Rng {
    key: [u32; 2],
    stream: u32,
    /// next counter index to encrypt
    counter: u64,
    buf: [u32; 4],
    /// how many of `buf` are used (4 = empty)
    used: usize,
}

impl Rng {
    pub fn new(seed: u64, stream: u32) -> Self {
        Rng {
            key: [seed as u32, (seed >> 32) as u32],
            stream,
            counter: 0,
            buf: [0; 4],
            used: 4,
        }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            let c = self.counter;
            self.buf = philox4x32_10(
                [c as u32, (c >> 32) as u32, self.stream, INIT_TAG],
                self.key,
            );
            self.counter = self.counter.wrapping_add(1);
            self.used = 0;
        }
        let x = self.buf[self.used];
        self.used += 1;
        x
    }

    /// Uniform in [lo, hi) (up to f32 rounding at the top end).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = unit_f32(self.next_u32()) as f64;
        (lo as f64 + (hi as f64 - lo as f64) * u) as f32
    }

    /// Standard normal by Box–Muller, using two u32 draws per value (the cosine branch).
    pub fn normal(&mut self) -> f32 {
        // u1 in (0, 1] so the log is finite
        let u1 = ((self.next_u32() >> 8) as f64 + 1.0) * (1.0 / 16_777_216.0);
        let u2 = unit_f32(self.next_u32()) as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}
