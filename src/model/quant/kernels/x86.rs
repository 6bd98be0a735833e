//! The AVX2 and AVX-512 VNNI kernels: eight interleaved rows per 256-bit multiply-add.

use crate::model::quant::{BLOCK, GROUP, Group, LANE_BYTES, QuantizedRow};
use std::arch::x86_64::*;

pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

pub(crate) fn vnni_available() -> bool {
    available()
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bw")
}

/// Four activations `q[i..i + 4]` in every i32 lane.
///
/// # Safety
/// `i + 4` must not pass the end of `q`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn broadcast4(q: &[i8], i: usize) -> __m256i {
    debug_assert!(i + LANE_BYTES <= q.len());
    // SAFETY: in bounds by the caller's contract.
    _mm256_set1_epi32(unsafe { q.as_ptr().add(i).cast::<i32>().read_unaligned() })
}

/// 32 interleaved value bytes at `at`: four bytes of each of the group's eight rows.
///
/// # Safety
/// `at + 32` must not pass the end of `v`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load32(v: &[u8], at: usize) -> __m256i {
    debug_assert!(at + GROUP * LANE_BYTES <= v.len());
    // SAFETY: in bounds by the caller's contract.
    unsafe { _mm256_loadu_si256(v.as_ptr().add(at).cast()) }
}

/// Eight f16 at `at` as f32.
///
/// # Safety
/// `at + 8` must not pass the end of `s`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load8_f16(s: &[u16], at: usize) -> __m256 {
    debug_assert!(at + GROUP <= s.len());
    // SAFETY: in bounds by the caller's contract.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(s.as_ptr().add(at).cast()) })
}

/// `u8 × i8` products summed in fours into the i32 lanes of `acc`, without VNNI. The sums
/// of pairs are i16: the callers pass 4-bit values (at most 15) or absolute 8-bit ones (at
/// most 128), so that a pair stays within 2 · 128 · 127.
#[inline]
#[target_feature(enable = "avx2")]
fn dp_avx2(acc: __m256i, x: __m256i, q: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(x, q);
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

#[inline]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
fn dp_vnni(acc: __m256i, x: __m256i, q: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, x, q)
}

/// The loop over a group's blocks, shared by the kernels, for `R` activation rows at once: the
/// group's values are loaded (and for the 4-bit kinds unpacked) once per step for all rows.
/// `$sums(b, sums)` adds block `b`'s exact integer sums of row `r` into the two chains
/// `sums[r]`; the 4-bit kinds add their offsets. Each row's floating-point operations are those
/// of a row alone, in the same order, so a row's result does not depend on the rows beside it.
/// A macro so that each kernel inlines its own code; it expands to unsafe calls whose features
/// the enclosing function must enable.
macro_rules! group_dot {
    ($w:expr, $a:expr, $offsets:expr, |$b:ident, $sums:ident| $step:expr) => {{
        let (w, a): (&Group, &[&QuantizedRow; R]) = ($w, $a);
        let offsets: Option<[&[f32]; R]> = $offsets;
        let (mut acc, mut off) = ([_mm256_setzero_ps(); R], [_mm256_setzero_ps(); R]);
        let per_block = w.kind.scales_per_block() * GROUP;
        for $b in 0..w.blocks {
            let mut $sums = [[_mm256_setzero_si256(); 2]; R];
            $step;
            // SAFETY: block b's scales are in the group (`per_block` of them).
            let d = unsafe { load8_f16(w.scales, $b * per_block) };
            for r in 0..R {
                let sums = _mm256_cvtepi32_ps(_mm256_add_epi32($sums[r][0], $sums[r][1]));
                acc[r] =
                    _mm256_fmadd_ps(sums, _mm256_mul_ps(d, _mm256_set1_ps(a[r].d[$b])), acc[r]);
            }
            if let Some(offsets) = offsets {
                // SAFETY: as above; the second eight follow the scales.
                let m = unsafe { load8_f16(w.scales, $b * per_block + GROUP) };
                for r in 0..R {
                    off[r] = _mm256_fmadd_ps(m, _mm256_set1_ps(offsets[r][$b]), off[r]);
                }
            }
        }
        let mut out = [[0f32; GROUP]; R];
        for r in 0..R {
            // SAFETY: eight floats fit `out[r]`.
            unsafe { _mm256_storeu_ps(out[r].as_mut_ptr(), _mm256_add_ps(acc[r], off[r])) };
        }
        out
    }};
}

/// Block `b` of a 4-bit group: per four-byte step, the low nibbles pair with activations
/// `4k..4k + 4` and the high ones with `16 + 4k..`, in two chains per row.
macro_rules! q4_sums {
    ($dp:ident, $w:expr, $a:expr, $b:expr, $sums:expr) => {{
        let (w, a, b): (&Group, &[&QuantizedRow; R], usize) = ($w, $a, $b);
        let sums: &mut [[__m256i; 2]; R] = $sums;
        let low = _mm256_set1_epi8(0x0f);
        let base = b * GROUP * (BLOCK / 2);
        prefetch_next(w.values, base, GROUP * (BLOCK / 2));
        for k in 0..BLOCK / 2 / LANE_BYTES {
            // SAFETY: the four steps of block b lie in the group's values.
            let packed = unsafe { load32(w.values, base + k * GROUP * LANE_BYTES) };
            let lo = _mm256_and_si256(packed, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
            for r in 0..R {
                // SAFETY: the activations have the group's blocks.
                let (q_lo, q_hi) = unsafe {
                    (
                        broadcast4(&a[r].q, b * BLOCK + k * LANE_BYTES),
                        broadcast4(&a[r].q, b * BLOCK + BLOCK / 2 + k * LANE_BYTES),
                    )
                };
                sums[r][0] = $dp(sums[r][0], lo, q_lo);
                sums[r][1] = $dp(sums[r][1], hi, q_hi);
            }
        }
    }};
}

/// Block `b` of an 8-bit group: the weights' signs moved onto the activations, since the
/// instructions multiply unsigned by signed.
macro_rules! q8_sums {
    ($dp:ident, $w:expr, $a:expr, $b:expr, $sums:expr) => {{
        let (w, a, b): (&Group, &[&QuantizedRow; R], usize) = ($w, $a, $b);
        let sums: &mut [[__m256i; 2]; R] = $sums;
        let base = b * GROUP * BLOCK;
        prefetch_next(w.values, base, GROUP * BLOCK);
        for k in 0..BLOCK / LANE_BYTES {
            // SAFETY: the eight steps of block b lie in the group's values.
            let x = unsafe { load32(w.values, base + k * GROUP * LANE_BYTES) };
            let unsigned = _mm256_sign_epi8(x, x);
            for r in 0..R {
                // SAFETY: the activations have the group's blocks.
                let q = unsafe { broadcast4(&a[r].q, b * BLOCK + k * LANE_BYTES) };
                sums[r][k % 2] = $dp(sums[r][k % 2], unsigned, _mm256_sign_epi8(q, x));
            }
        }
    }};
}

/// # Safety
/// AVX2, FMA, F16C, AVX-512 VNNI and VL must be present; each row of `a` has the group's blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(crate) unsafe fn dot_q4_vnni<const R: usize>(
    w: &Group,
    a: &[&QuantizedRow; R],
    offsets: [&[f32]; R],
) -> [[f32; GROUP]; R] {
    group_dot!(w, a, Some(offsets), |b, sums| q4_sums!(
        dp_vnni, w, a, b, &mut sums
    ))
}

/// # Safety
/// AVX2, FMA and F16C must be present; each row of `a` has the group's blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_avx2<const R: usize>(
    w: &Group,
    a: &[&QuantizedRow; R],
    offsets: [&[f32]; R],
) -> [[f32; GROUP]; R] {
    group_dot!(w, a, Some(offsets), |b, sums| q4_sums!(
        dp_avx2, w, a, b, &mut sums
    ))
}

/// # Safety
/// As [`dot_q4_vnni`].
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(crate) unsafe fn dot_q8_vnni<const R: usize>(
    w: &Group,
    a: &[&QuantizedRow; R],
) -> [[f32; GROUP]; R] {
    group_dot!(w, a, None, |b, sums| q8_sums!(dp_vnni, w, a, b, &mut sums))
}

/// # Safety
/// As [`dot_q4_avx2`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q8_avx2<const R: usize>(
    w: &Group,
    a: &[&QuantizedRow; R],
) -> [[f32; GROUP]; R] {
    group_dot!(w, a, None, |b, sums| q8_sums!(dp_avx2, w, a, b, &mut sums))
}

/// The 32 interleaved value bytes at `at` of two groups, the first's in the low half.
///
/// # Safety
/// `at + 32` must not pass the end of either.
#[inline]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn load32_pair(v: [&[u8]; 2], at: usize) -> __m512i {
    // SAFETY: in bounds by the caller's contract.
    unsafe { _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load32(v[0], at)), load32(v[1], at)) }
}

/// Eight f16 at `at` of two groups' scales as sixteen f32, the first's in the low half.
///
/// # Safety
/// `at + 8` must not pass the end of either.
#[inline]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn load8_f16_pair(s: [&[u16]; 2], at: usize) -> __m512 {
    debug_assert!(at + GROUP <= s[0].len() && at + GROUP <= s[1].len());
    // SAFETY: in bounds by the caller's contract.
    unsafe {
        let low = _mm_loadu_si128(s[0].as_ptr().add(at).cast());
        let high = _mm_loadu_si128(s[1].as_ptr().add(at).cast());
        _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(
            _mm256_castsi128_si256(low),
            high,
        ))
    }
}

/// [`group_dot`] for two groups at once in 512-bit registers: the first group's eight rows in
/// the low lanes, the second's in the high ones. Both take the same activations, so a
/// broadcast serves sixteen rows, and each lane's operations are those of the 256-bit kernels,
/// in the same order: the results have the same bits as two calls of those.
macro_rules! pair_dot {
    ($w:expr, $a:expr, $offsets:expr, |$b:ident, $sums:ident| $step:expr) => {{
        let (w, a): ([&Group; 2], &[&QuantizedRow; R]) = ($w, $a);
        let offsets: Option<[&[f32]; R]> = $offsets;
        let (mut acc, mut off) = ([_mm512_setzero_ps(); R], [_mm512_setzero_ps(); R]);
        let per_block = w[0].kind.scales_per_block() * GROUP;
        let scales = [w[0].scales, w[1].scales];
        for $b in 0..w[0].blocks {
            let mut $sums = [[_mm512_setzero_si512(); 2]; R];
            $step;
            // SAFETY: block b's scales are in both groups (`per_block` of them).
            let d = unsafe { load8_f16_pair(scales, $b * per_block) };
            for r in 0..R {
                let sums = _mm512_cvtepi32_ps(_mm512_add_epi32($sums[r][0], $sums[r][1]));
                acc[r] =
                    _mm512_fmadd_ps(sums, _mm512_mul_ps(d, _mm512_set1_ps(a[r].d[$b])), acc[r]);
            }
            if let Some(offsets) = offsets {
                // SAFETY: as above; the second eight follow the scales.
                let m = unsafe { load8_f16_pair(scales, $b * per_block + GROUP) };
                for r in 0..R {
                    off[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(offsets[r][$b]), off[r]);
                }
            }
        }
        let mut out = [[[0f32; GROUP]; R]; 2];
        for r in 0..R {
            let mut both = [0f32; 2 * GROUP];
            // SAFETY: sixteen floats fit `both`.
            unsafe { _mm512_storeu_ps(both.as_mut_ptr(), _mm512_add_ps(acc[r], off[r])) };
            out[0][r].copy_from_slice(&both[..GROUP]);
            out[1][r].copy_from_slice(&both[GROUP..]);
        }
        out
    }};
}

/// # Safety
/// AVX2, FMA, F16C, AVX-512 F, BW, VNNI and VL must be present; both groups have the same
/// kind and blocks, and each row of `a` has the groups' blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
pub(crate) unsafe fn dot_q4_vnni_pair<const R: usize>(
    w: [&Group; 2],
    a: &[&QuantizedRow; R],
    offsets: [&[f32]; R],
) -> [[[f32; GROUP]; R]; 2] {
    let values = [w[0].values, w[1].values];
    pair_dot!(w, a, Some(offsets), |b, sums| {
        let low = _mm512_set1_epi8(0x0f);
        let base = b * GROUP * (BLOCK / 2);
        prefetch_next_pair(values, base, GROUP * (BLOCK / 2));
        for k in 0..BLOCK / 2 / LANE_BYTES {
            // SAFETY: the four steps of block b lie in both groups' values.
            let packed = unsafe { load32_pair(values, base + k * GROUP * LANE_BYTES) };
            let lo = _mm512_and_si512(packed, low);
            let hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low);
            for r in 0..R {
                // SAFETY: the activations have the groups' blocks.
                let (q_lo, q_hi) = unsafe {
                    (
                        broadcast4_512(&a[r].q, b * BLOCK + k * LANE_BYTES),
                        broadcast4_512(&a[r].q, b * BLOCK + BLOCK / 2 + k * LANE_BYTES),
                    )
                };
                sums[r][0] = _mm512_dpbusd_epi32(sums[r][0], lo, q_lo);
                sums[r][1] = _mm512_dpbusd_epi32(sums[r][1], hi, q_hi);
            }
        }
    })
}

/// # Safety
/// As [`dot_q4_vnni_pair`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
pub(crate) unsafe fn dot_q8_vnni_pair<const R: usize>(
    w: [&Group; 2],
    a: &[&QuantizedRow; R],
) -> [[[f32; GROUP]; R]; 2] {
    let values = [w[0].values, w[1].values];
    pair_dot!(w, a, None, |b, sums| {
        let base = b * GROUP * BLOCK;
        prefetch_next_pair(values, base, GROUP * BLOCK);
        for k in 0..BLOCK / LANE_BYTES {
            // SAFETY: the eight steps of block b lie in both groups' values.
            let x = unsafe { load32_pair(values, base + k * GROUP * LANE_BYTES) };
            // The weights' signs onto the activations: negated where the weight is negative
            // (where it is zero the product is zero either way).
            let unsigned = _mm512_abs_epi8(x);
            let negative = _mm512_movepi8_mask(x);
            for r in 0..R {
                // SAFETY: the activations have the groups' blocks.
                let q = unsafe { broadcast4_512(&a[r].q, b * BLOCK + k * LANE_BYTES) };
                let signed = _mm512_mask_sub_epi8(q, negative, _mm512_setzero_si512(), q);
                sums[r][k % 2] = _mm512_dpbusd_epi32(sums[r][k % 2], unsigned, signed);
            }
        }
    })
}

/// Four activations `q[i..i + 4]` in every i32 lane of a 512-bit register.
///
/// # Safety
/// `i + 4` must not pass the end of `q`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn broadcast4_512(q: &[i8], i: usize) -> __m512i {
    debug_assert!(i + LANE_BYTES <= q.len());
    // SAFETY: in bounds by the caller's contract.
    _mm512_set1_epi32(unsafe { q.as_ptr().add(i).cast::<i32>().read_unaligned() })
}

/// Asks for the `bytes` at `at` of the group `ahead` bytes further on to be brought into the
/// cache while this one computes: a product of several rows computes long enough per byte that
/// the memory waits otherwise go unhidden, and a row alone keeps more reads in flight.
#[inline(always)]
fn prefetch(values: &[u8], at: usize, bytes: usize, ahead: usize) {
    let p = values.as_ptr().wrapping_add(at + ahead);
    for line in (0..bytes).step_by(64) {
        // SAFETY: a prefetch reads nothing and does not fault (an address past the matrix is
        // ignored).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line).cast()) };
    }
}

/// [`prefetch`] of the next group, which follows this one in memory.
#[inline(always)]
fn prefetch_next(values: &[u8], at: usize, bytes: usize) {
    prefetch(values, at, bytes, values.len());
}

/// [`prefetch`] of the next pair of groups, which follow these two.
#[inline(always)]
fn prefetch_next_pair(values: [&[u8]; 2], at: usize, bytes: usize) {
    for v in values {
        prefetch(v, at, bytes, 2 * v.len());
    }
}
