//! The AVX2 and AVX-512 VNNI kernels: eight interleaved rows per 256-bit multiply-add.

use crate::model::quant::{BLOCK, GROUP, Group, LANE_BYTES, QuantizedRow};
use std::arch::x86_64::*;

pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

pub(crate) fn vnni_available() -> bool {
    available() && is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
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
