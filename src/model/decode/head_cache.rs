//! The keys and values of one key/value head for decoding, laid out for the CPU's vector units,
//! and attention of that head's group of queries over them.
//!
//! Keys are kept transposed in blocks of [`KEYS`] positions (`[block][head_dim][KEYS]`): the
//! scores of a block are `head_dim` multiply-adds of whole vectors, with no sum across lanes
//! per key. Values stay one row per position; a query's output is a vector multiply-add per
//! position. The softmax's exponentials are a polynomial that vectorizes too. The queries that
//! share the head are computed together, so that each key and value read serves all of them.

use std::ops::Range;

/// Positions per block of transposed keys, and dimensions of a query's output kept in
/// registers at a time (the known head sizes are multiples of it).
const WIDTH: usize = 64;
const KEYS: usize = WIDTH;
const VALUES: usize = WIDTH;

#[derive(Debug, Clone, Default)]
pub struct HeadCache {
    head_dim: usize,
    len: usize,
    /// `[blocks, head_dim, KEYS]`; positions past `len` in the last block are zero.
    keys: Vec<f32>,
    /// `[len, head_dim]`.
    values: Vec<f32>,
}

impl HeadCache {
    /// An empty cache with room for `positions` positions before it reallocates.
    pub fn with_capacity(head_dim: usize, positions: usize) -> HeadCache {
        HeadCache {
            head_dim,
            len: 0,
            keys: Vec::with_capacity(positions.div_ceil(KEYS) * KEYS * head_dim),
            values: Vec::with_capacity(positions * head_dim),
        }
    }

    /// Appends one position's key and value (`head_dim` each).
    pub fn push(&mut self, key: &[f32], value: &[f32]) {
        let d = self.head_dim;
        let slot = self.len % KEYS;
        if slot == 0 {
            self.keys.resize(self.keys.len() + d * KEYS, 0.0);
        }
        let block = self.keys.len() - d * KEYS;
        for (i, k) in key.iter().enumerate() {
            self.keys[block + i * KEYS + slot] = *k;
        }
        self.values.extend_from_slice(value);
        self.len += 1;
    }

    /// Blocks of [`KEYS`] positions that hold the first `len` positions (the last one may be
    /// partial).
    pub fn blocks_for(len: usize) -> usize {
        len.div_ceil(KEYS)
    }

    /// The queries' attention over the positions of key blocks `blocks` below `len` (the
    /// query's own position and those before it), unnormalized, for [`combine`]: per query
    /// `[max score, Σ e^(s - max), Σ e^(s - max) v]` (`head_dim + 2` values) into `part`.
    /// Splitting the positions lets several cores share one head's work.
    pub fn attend_part(
        &self,
        queries: &[f32],
        scale: f32,
        blocks: Range<usize>,
        len: usize,
        part: &mut [f32],
    ) {
        let len = len.min(self.len);
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F was detected at run time.
                return unsafe { self.part_avx512(queries, scale, blocks, len, part) };
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: AVX2 and FMA were detected at run time.
                return unsafe { self.part_avx2(queries, scale, blocks, len, part) };
            }
        }
        self.part(queries, scale, blocks, len, part);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn part_avx512(&self, q: &[f32], scale: f32, b: Range<usize>, len: usize, part: &mut [f32]) {
        self.part(q, scale, b, len, part);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn part_avx2(&self, q: &[f32], scale: f32, b: Range<usize>, len: usize, part: &mut [f32]) {
        self.part(q, scale, b, len, part);
    }

    /// The code of every variant, inlined into each so that it compiles for its features:
    /// for the common head sizes with the size known, so that a query's output stays in
    /// registers over the positions.
    #[inline(always)]
    fn part(
        &self,
        queries: &[f32],
        scale: f32,
        blocks: Range<usize>,
        len: usize,
        part: &mut [f32],
    ) {
        match self.head_dim {
            64 => self.part_with::<64>(queries, scale, blocks, len, part),
            128 => self.part_with::<128>(queries, scale, blocks, len, part),
            _ => self.part_with::<0>(queries, scale, blocks, len, part),
        }
    }

    /// [`Self::part`] for heads of `D` dimensions, or any when `D` is 0. Plain loops over
    /// fixed-size arrays, which the compiler turns into vector code.
    #[inline(always)]
    fn part_with<const D: usize>(
        &self,
        queries: &[f32],
        scale: f32,
        blocks: Range<usize>,
        len: usize,
        part: &mut [f32],
    ) {
        let d = self.head_dim;
        let first = blocks.start * KEYS;
        let n = (blocks.end * KEYS).min(len).saturating_sub(first);
        if n == 0 {
            for part in part.chunks_exact_mut(d + 2) {
                part.fill(0.0);
                part[0] = f32::NEG_INFINITY;
            }
            return;
        }
        let stride = blocks.len() * KEYS;
        let nq = queries.len() / d;
        // `[query][position]`, in this thread's buffer (kept between calls: a step makes
        // thousands of these).
        let mut scores = SCORES.take();
        scores.clear();
        scores.resize(nq * stride, 0.0);
        let span = Span {
            keys: &self.keys[blocks.start * d * KEYS..blocks.end * d * KEYS],
            values: &self.values[first * d..(first + n) * d],
            d,
            n,
            stride,
        };
        // The queries that share this key/value head a few at a time, so that each key and
        // value read from memory serves all of them.
        let mut q = 0;
        while q < nq {
            let (qs, s, p) = (
                &queries[q * d..],
                &mut scores[q * stride..],
                &mut part[q * (d + 2)..],
            );
            q += match nq - q {
                1 => span.attend::<D, 1>(qs, scale, s, p),
                2 => span.attend::<D, 2>(qs, scale, s, p),
                3 => span.attend::<D, 3>(qs, scale, s, p),
                _ => span.attend::<D, 4>(qs, scale, s, p),
            };
        }
        SCORES.set(scores);
    }
}

/// The stretch of one head's cache that a call of [`HeadCache::attend_part`] reads.
struct Span<'c> {
    /// Whole blocks of transposed keys, `[blocks, d, KEYS]`.
    keys: &'c [f32],
    /// `[n, d]`.
    values: &'c [f32],
    d: usize,
    /// Positions.
    n: usize,
    /// Scores kept per query (whole blocks).
    stride: usize,
}

impl Span<'_> {
    /// Attention of `G` queries (`[G, d]` at the start of `queries`) over the span into the
    /// first `G` parts of `part` (`[max, sum, out]` each), with `scores` (`[G, stride]` at its
    /// start) as room for their scores. Returns `G`.
    #[inline(always)]
    fn attend<const D: usize, const G: usize>(
        &self,
        queries: &[f32],
        scale: f32,
        scores: &mut [f32],
        part: &mut [f32],
    ) -> usize {
        let (d, n, stride) = (self.d, self.n, self.stride);
        let query = |g: usize| &queries[g * d..(g + 1) * d];
        for (b, block) in self.keys.chunks_exact(d * KEYS).enumerate() {
            let mut acc = [[0f32; KEYS]; G];
            for (i, keys) in block.as_chunks::<KEYS>().0.iter().enumerate() {
                prefetch(keys.as_ptr().wrapping_add(AHEAD));
                for (g, acc) in acc.iter_mut().enumerate() {
                    let q = query(g)[i];
                    for t in 0..KEYS {
                        acc[t] = q.mul_add(keys[t], acc[t]);
                    }
                }
            }
            for (g, acc) in acc.iter().enumerate() {
                let s = &mut scores[g * stride + b * KEYS..g * stride + (b + 1) * KEYS];
                for (s, a) in s.iter_mut().zip(acc) {
                    *s = a * scale;
                }
            }
        }
        for g in 0..G {
            let s = &mut scores[g * stride..g * stride + n];
            // Sixteen lanes of maxima and sums, so that the loops vectorize.
            let mut lanes = [f32::NEG_INFINITY; 16];
            for chunk in s.chunks(16) {
                for (m, s) in lanes.iter_mut().zip(chunk) {
                    *m = if *s > *m { *s } else { *m };
                }
            }
            let max = lanes.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b));
            for s in s.iter_mut() {
                *s = exp(*s - max);
            }
            let mut sums = [0f32; 16];
            for chunk in s.chunks(16) {
                for (t, s) in sums.iter_mut().zip(chunk) {
                    *t += s;
                }
            }
            part[g * (d + 2)] = max;
            part[g * (d + 2) + 1] = sums.iter().sum();
        }
        // Where query `g`'s output dimensions `at..at + len` go in `part`.
        let out = |g: usize, at: usize, len: usize| {
            let o = g * (d + 2) + 2 + at;
            o..o + len
        };
        if D == 0 {
            for g in 0..G {
                let o = out(g, 0, d);
                let out = &mut part[o];
                out.fill(0.0);
                for (p, v) in scores[g * stride..g * stride + n]
                    .iter()
                    .zip(self.values.chunks_exact(d))
                {
                    for (o, v) in out.iter_mut().zip(v) {
                        *o = p.mul_add(*v, *o);
                    }
                }
            }
            return G;
        }
        // Sixty-four dimensions of every query's output at a time, in registers over the
        // positions.
        for at in (0..D).step_by(VALUES) {
            let mut acc = [[0f32; VALUES]; G];
            for (pos, v) in self.values.chunks_exact(D).enumerate() {
                let Ok(v) = <&[f32; VALUES]>::try_from(&v[at..at + VALUES]) else {
                    continue;
                };
                prefetch(v.as_ptr().wrapping_add(8 * D));
                for (g, acc) in acc.iter_mut().enumerate() {
                    let p = scores[g * stride + pos];
                    for t in 0..VALUES {
                        acc[t] = p.mul_add(v[t], acc[t]);
                    }
                }
            }
            for (g, acc) in acc.iter().enumerate() {
                let o = out(g, at, VALUES);
                part[o].copy_from_slice(acc);
            }
        }
        G
    }
}

/// How far ahead of the arithmetic [`prefetch`] asks: eight rows of keys or values.
const AHEAD: usize = 8 * WIDTH;

/// Asks for the [`WIDTH`] values at `p` to be brought into the cache (a hint: nothing is read,
/// an address past the cache is ignored). A call of [`HeadCache::attend_part`] reads a few
/// kilobytes of one head, too short a stretch for the hardware's own prefetching to reach full
/// speed.
#[inline(always)]
fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..WIDTH).step_by(16) {
        // SAFETY: a prefetch reads nothing and does not fault.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.wrapping_add(line).cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

thread_local! {
    /// Each thread's buffer of attention scores.
    static SCORES: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Outputs `[n, d]` from partial attentions of the same queries over disjoint positions,
/// `parts` one after another (each `[n, d + 2]`, from [`HeadCache::attend_part`]): the sums
/// rescaled to the overall maximum.
pub fn combine(parts: &[f32], d: usize, out: &mut [f32]) {
    let part = out.len() / d * (d + 2);
    for (r, out) in out.chunks_exact_mut(d).enumerate() {
        let at = r * (d + 2);
        let max = parts
            .chunks_exact(part)
            .map(|p| p[at])
            .fold(f32::NEG_INFINITY, f32::max);
        out.fill(0.0);
        let mut sum = 0f32;
        for p in parts.chunks_exact(part) {
            if p[at] == f32::NEG_INFINITY {
                continue; // a part without positions
            }
            let w = (p[at] - max).exp();
            sum += w * p[at + 1];
            for (o, v) in out.iter_mut().zip(&p[at + 2..at + 2 + d]) {
                *o += w * v;
            }
        }
        let inv = 1.0 / sum;
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

/// `e^x` for `x ≤ 0`, within four units in the last place: `2^n · p(r)` with `x = n ln 2 + r`,
/// `|r| ≤ ln 2 / 2`, `p` the degree-6 Taylor polynomial. Arithmetic and bit moves only, so
/// that a loop of it vectorizes.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Below this, e^x is under f32's smallest normal number; 2^-126 · p stays normal.
    let x = if x < -87.0 { -87.0 } else { x };
    // Round to the nearest integer by adding and removing 1.5 · 2^23; the sum's low bits hold
    // the integer (a bit move, where a cast would not vectorize).
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let exponent = t.to_bits() as i32 - 0x4b40_0000 + 127;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    f32::from_bits((exponent as u32) << 23) * p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rng::SeededRng;

    #[test]
    fn the_polynomial_exponential_is_within_four_ulp() {
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (got, want) = (exp(x), x.exp());
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 4, "e^{x}: {got} vs {want} ({ulp} ulp)");
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1e4) > 0.0 && exp(-1e4) < 1e-37);
    }

    /// Softmax attention the textbook way, in f64.
    fn reference(keys: &[Vec<f32>], values: &[Vec<f32>], q: &[f32], scale: f32) -> Vec<f64> {
        let scores: Vec<f64> = keys
            .iter()
            .map(|k| k.iter().zip(q).map(|(a, b)| f64::from(a * b)).sum::<f64>() * f64::from(scale))
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = p.iter().sum();
        (0..q.len())
            .map(|t| {
                p.iter()
                    .zip(values)
                    .map(|(p, v)| p * f64::from(v[t]))
                    .sum::<f64>()
                    / sum
            })
            .collect()
    }

    #[test]
    fn attention_matches_softmax_over_every_position() {
        let mut rng = SeededRng::new(7);
        let mut random =
            |n: usize| -> Vec<f32> { (0..n).map(|_| (4.0 * rng.f64() - 2.0) as f32).collect() };
        // The sizes the code knows and one it does not; lengths around the block size (a
        // partial last block is zero-padded); groups of queries computed together (up to four)
        // and a remainder.
        for (d, len, nq) in [64usize, 128, 24].into_iter().flat_map(|d| {
            [1usize, 5, 63, 64, 65, 150]
                .into_iter()
                .flat_map(move |len| [1usize, 2, 3, 5].map(|nq| (d, len, nq)))
        }) {
            let keys: Vec<Vec<f32>> = (0..len).map(|_| random(d)).collect();
            let values: Vec<Vec<f32>> = (0..len).map(|_| random(d)).collect();
            let mut cache = HeadCache::with_capacity(d, 0);
            for (k, v) in keys.iter().zip(&values) {
                cache.push(k, v);
            }
            let queries = random(nq * d);
            // Every position, and (a query at an earlier position) the first few only.
            for upto in [len, len.div_ceil(3)] {
                let blocks = HeadCache::blocks_for(upto);
                // In one part, with the vector features...
                let mut part = vec![f32::NAN; nq * (d + 2)];
                cache.attend_part(&queries, 0.4, 0..blocks, upto, &mut part);
                let mut out = vec![f32::NAN; nq * d];
                combine(&part, d, &mut out);
                // ...and in two parts, one of them without the vector features.
                let split = blocks / 2;
                let mut parts = [vec![f32::NAN; nq * (d + 2)], vec![f32::NAN; nq * (d + 2)]];
                cache.part(&queries, 0.4, 0..split, upto, &mut parts[0]);
                cache.attend_part(&queries, 0.4, split..blocks, upto, &mut parts[1]);
                let mut portable = vec![f32::NAN; nq * d];
                combine(&parts.concat(), d, &mut portable);
                for (r, q) in queries.chunks_exact(d).enumerate() {
                    let want = reference(&keys[..upto], &values[..upto], q, 0.4);
                    for t in 0..d {
                        for got in [out[r * d + t], portable[r * d + t]] {
                            assert!(
                                (f64::from(got) - want[t]).abs() < 1e-5,
                                "d {d}, len {len} upto {upto}, query {r} of {nq}, dim {t}: {got} vs {}",
                                want[t]
                            );
                        }
                    }
                }
            }
        }
    }
}
