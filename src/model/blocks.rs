//! Weights kept in GGUF's legacy 4- and 8-bit blocks (Q4_0, Q4_1, Q8_0) and the matrix-vector
//! product that decoding on the CPU spends its time in. As in llama.cpp, the activations are
//! rounded to 8 bits per block of 32 and the products are integer dot products (AVX2 where the CPU
//! has it), split over the cores; candle's own kernel for these types is scalar.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, bail};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Values per block in every format here.
const BLOCK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `d · (q - 8)`, q 4-bit.
    Q4_0,
    /// `d · q + m`, q 4-bit.
    Q4_1,
    /// `d · q`, q signed 8-bit.
    Q8_0,
}

impl BlockKind {
    pub fn of(dtype: GgmlDType) -> Option<BlockKind> {
        match dtype {
            GgmlDType::Q4_0 => Some(BlockKind::Q4_0),
            GgmlDType::Q4_1 => Some(BlockKind::Q4_1),
            GgmlDType::Q8_0 => Some(BlockKind::Q8_0),
            _ => None,
        }
    }

    /// Bytes of one block in a GGUF file.
    fn file_bytes(self) -> usize {
        match self {
            BlockKind::Q4_0 => 18,
            BlockKind::Q4_1 => 20,
            BlockKind::Q8_0 => 34,
        }
    }

    /// f16 numbers kept per block: `d`, and for the 4-bit kinds the offset's factor.
    fn scales_per_block(self) -> usize {
        match self {
            BlockKind::Q4_0 | BlockKind::Q4_1 => 2,
            BlockKind::Q8_0 => 1,
        }
    }

    /// Bytes of one block's quantized values.
    fn value_bytes(self) -> usize {
        match self {
            BlockKind::Q4_0 | BlockKind::Q4_1 => BLOCK / 2,
            BlockKind::Q8_0 => BLOCK,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BlockKind::Q4_0 => "Q4_0",
            BlockKind::Q4_1 => "Q4_1",
            BlockKind::Q8_0 => "Q8_0",
        }
    }
}

/// Every f16 bit pattern as f32, so that a block's scale costs one load.
fn f16_table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|b| half::f16::from_bits(b).to_f32())
            .collect()
    })
}

/// A `[rows, cols]` weight as blocks, stored by field so the values stream contiguously: the
/// values, and per block the f16 bits of the scale `d` and, for Q4_0 and Q4_1, a second number
/// (Q4_1's offset `m`; Q4_0's `d` again, its offset being `-8 d`), as in the file. Keeping the
/// scales in f16 reads 20 bytes per Q4_1 block instead of 24: decoding streams every weight once
/// per token and waits on memory.
#[derive(Debug)]
pub struct BlockMatrix {
    kind: BlockKind,
    rows: usize,
    cols: usize,
    scales: Vec<u16>,
    values: Vec<u8>,
}

impl BlockMatrix {
    /// `None` for a tensor of another type or shape than these kernels handle.
    pub fn from_qtensor(q: &QTensor) -> Result<Option<BlockMatrix>> {
        let Some(kind) = BlockKind::of(q.dtype()) else {
            return Ok(None);
        };
        let (rows, cols) = q.shape().dims2()?;
        if !cols.is_multiple_of(BLOCK) {
            return Ok(None);
        }
        BlockMatrix::from_bytes(kind, rows, cols, &q.data()?).map(Some)
    }

    /// Reads `rows · cols / 32` blocks in the GGUF layout.
    pub fn from_bytes(kind: BlockKind, rows: usize, cols: usize, raw: &[u8]) -> Result<Self> {
        let blocks = rows * cols / BLOCK;
        if !cols.is_multiple_of(BLOCK) || raw.len() != blocks * kind.file_bytes() {
            bail!(
                "{} tensor [{rows}, {cols}] needs {} bytes, has {}",
                kind.name(),
                blocks * kind.file_bytes(),
                raw.len()
            );
        }
        let mut out = BlockMatrix {
            kind,
            rows,
            cols,
            scales: Vec::with_capacity(blocks * kind.scales_per_block()),
            values: Vec::with_capacity(blocks * kind.value_bytes()),
        };
        let half = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
        for b in raw.chunks_exact(kind.file_bytes()) {
            let values = match kind {
                BlockKind::Q4_0 => {
                    out.scales.extend([half(&b[0..2]), half(&b[0..2])]);
                    &b[2..]
                }
                BlockKind::Q4_1 => {
                    out.scales.extend([half(&b[0..2]), half(&b[2..4])]);
                    &b[4..]
                }
                BlockKind::Q8_0 => {
                    out.scales.push(half(&b[0..2]));
                    &b[2..]
                }
            };
            out.values.extend_from_slice(values);
        }
        Ok(out)
    }

    pub fn kind(&self) -> BlockKind {
        self.kind
    }

    /// `(rows, cols)`, i.e. `(out, in)` of the linear layer.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The weight as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        (0..self.rows).for_each(|r| self.dequantize_row(r, &mut out));
        out
    }

    /// Rows `ids` as f32 (an embedding lookup), `[ids.len(), cols]` row-major.
    pub fn gather_rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        for &id in ids {
            let row = id as usize;
            if row >= self.rows {
                bail!("token id {id} is outside the vocabulary of {}", self.rows);
            }
            self.dequantize_row(row, &mut out);
        }
        Ok(out)
    }

    fn dequantize_row(&self, row: usize, out: &mut Vec<f32>) {
        let w = self.row(row);
        let vb = self.kind.value_bytes();
        for (b, v) in w.values.chunks_exact(vb).enumerate() {
            let (d, m) = (w.d(b), w.m(b));
            match self.kind {
                BlockKind::Q8_0 => out.extend(v.iter().map(|q| d * f32::from(*q as i8))),
                BlockKind::Q4_0 | BlockKind::Q4_1 => {
                    out.extend(v.iter().map(|q| d * f32::from(q & 0x0f) + m));
                    out.extend(v.iter().map(|q| d * f32::from(q >> 4) + m));
                }
            }
        }
    }

    /// `y = x W^T` for `x` of `n` rows (`[n, cols]`, row-major); `y` is `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        matmul_many(&[self], x, n).pop().unwrap_or_default()
    }

    fn row(&self, row: usize) -> BlockRow<'_> {
        let blocks = self.cols / BLOCK;
        let first = row * blocks;
        let (vb, sb) = (self.kind.value_bytes(), self.kind.scales_per_block());
        BlockRow {
            kind: self.kind,
            scales: &self.scales[first * sb..(first + blocks) * sb],
            values: &self.values[first * vb..(first + blocks) * vb],
        }
    }

    fn dot(&self, kernel: Kernel, row: usize, a: &QuantizedRow) -> f32 {
        let w = self.row(row);
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the kernel's features were detected at run time (`Kernel::detect`).
            Kernel::Vnni => unsafe {
                match self.kind {
                    BlockKind::Q8_0 => simd::dot_q8_vnni(&w, a),
                    BlockKind::Q4_0 | BlockKind::Q4_1 => simd::dot_q4_vnni(&w, a),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe {
                match self.kind {
                    BlockKind::Q8_0 => simd::dot_q8(&w, a),
                    BlockKind::Q4_0 | BlockKind::Q4_1 => simd::dot_q4(&w, a),
                }
            },
            Kernel::Portable => match self.kind {
                BlockKind::Q8_0 => portable::dot_q8(&w, a),
                BlockKind::Q4_0 | BlockKind::Q4_1 => portable::dot_q4(&w, a),
            },
        }
    }
}

/// The dot-product code this CPU runs, detected once per product rather than once per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Kernel {
    fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if simd::vnni_available() {
                return Kernel::Vnni;
            }
            if simd::available() {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }
}

/// `x W^T` for each of `weights` (all `cols` wide), `[n, rows_i]` each: the activations are rounded
/// once and every product runs in one parallel region, so a decode step wakes the thread pool once
/// for q/k/v and once for gate/up instead of per weight.
pub fn matmul_many(weights: &[&BlockMatrix], x: &[f32], n: usize) -> Vec<Vec<f32>> {
    let cols = weights.first().map_or(0, |w| w.cols);
    debug_assert!(weights.iter().all(|w| w.cols == cols));
    let acts: Vec<QuantizedRow> = x.chunks_exact(cols).map(QuantizedRow::new).collect();
    let total_rows: usize = weights.iter().map(|w| w.rows).sum();
    // Output rows in chunks per task; each task writes `n` values per weight row.
    let per_task = (total_rows / (4 * rayon::current_num_threads())).clamp(16, 1024);
    let mut by_weight: Vec<Vec<f32>> = weights.iter().map(|w| vec![0f32; w.rows * n]).collect();
    let tasks: Vec<(&BlockMatrix, usize, &mut [f32])> = weights
        .iter()
        .zip(by_weight.iter_mut())
        .flat_map(|(w, out)| {
            out.chunks_mut(per_task * n)
                .enumerate()
                .map(move |(t, chunk)| (*w, t * per_task, chunk))
        })
        .collect();
    let kernel = Kernel::detect();
    tasks.into_par_iter().for_each(|(w, first, chunk)| {
        for (i, out) in chunk.chunks_exact_mut(n).enumerate() {
            for (o, a) in out.iter_mut().zip(&acts) {
                *o = w.dot(kernel, first + i, a);
            }
        }
    });
    if n == 1 {
        return by_weight;
    }
    weights
        .iter()
        .zip(by_weight)
        .map(|(w, values)| {
            let mut y = vec![0f32; n * w.rows];
            for (row, v) in values.chunks_exact(n).enumerate() {
                for (r, value) in v.iter().enumerate() {
                    y[r * w.rows + row] = *value;
                }
            }
            y
        })
        .collect()
}

/// One weight row's blocks.
struct BlockRow<'a> {
    kind: BlockKind,
    scales: &'a [u16],
    values: &'a [u8],
}

impl BlockRow<'_> {
    fn blocks(&self) -> usize {
        self.values.len() / self.kind.value_bytes()
    }

    /// Block `b`'s scale.
    fn d(&self, b: usize) -> f32 {
        f16_table()[usize::from(self.scales[b * self.kind.scales_per_block()])]
    }

    /// Block `b`'s offset: `d · q + m` for Q4_1, `d · (q - 8)` for Q4_0.
    fn m(&self, b: usize) -> f32 {
        match self.kind {
            BlockKind::Q4_0 => -8.0 * self.d(b),
            BlockKind::Q4_1 => f16_table()[usize::from(self.scales[2 * b + 1])],
            BlockKind::Q8_0 => 0.0,
        }
    }
}

/// An activation row rounded to 8 bits per block: `x ≈ d · q`, and `s = d · Σq` per block. As in
/// ggml, `d` and `s` are rounded to f16 and the values to the nearest integer, ties to even.
struct QuantizedRow {
    q: Vec<i8>,
    d: Vec<f32>,
    /// `[d, s]` per block, beside the 4-bit weights' `[d, m]` f16 pairs (Q4_1)...
    ds: Vec<f32>,
    /// ...and `[d, -8 s]` beside Q4_0's `[d, d]`, whose offset is `-8 d`.
    ds8: Vec<f32>,
}

impl QuantizedRow {
    fn new(x: &[f32]) -> QuantizedRow {
        let blocks = x.len() / BLOCK;
        let mut out = QuantizedRow {
            q: Vec::with_capacity(x.len()),
            d: Vec::with_capacity(blocks),
            ds: Vec::with_capacity(2 * blocks),
            ds8: Vec::with_capacity(2 * blocks),
        };
        let to_f16 = |v: f32| half::f16::from_f32(v).to_f32();
        for block in x.chunks_exact(BLOCK) {
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let mut sum = 0i32;
            for v in block {
                // Adding and removing 1.5 · 2^23 rounds to the nearest integer, ties to even
                // (|v · inv| ≤ 127), without a call to the C library's rintf.
                let q = ((v * inv + 12_582_912.0) - 12_582_912.0) as i8;
                sum += i32::from(q);
                out.q.push(q);
            }
            let (d, s) = (to_f16(d), to_f16(d * sum as f32));
            out.d.push(d);
            out.ds.extend([d, s]);
            out.ds8.extend([d, -8.0 * s]);
        }
        out
    }
}

mod portable {
    use super::{BLOCK, BlockRow, QuantizedRow};

    pub(super) fn dot_q4(w: &BlockRow, a: &QuantizedRow) -> f32 {
        let mut total = 0f32;
        for (b, v) in w.values.chunks_exact(BLOCK / 2).enumerate() {
            let q = &a.q[b * BLOCK..(b + 1) * BLOCK];
            let sum: i32 = v
                .iter()
                .enumerate()
                .map(|(j, byte)| {
                    i32::from(byte & 0x0f) * i32::from(q[j])
                        + i32::from(byte >> 4) * i32::from(q[j + BLOCK / 2])
                })
                .sum();
            total += w.d(b) * a.d[b] * sum as f32 + w.m(b) * a.ds[2 * b + 1];
        }
        total
    }

    pub(super) fn dot_q8(w: &BlockRow, a: &QuantizedRow) -> f32 {
        let mut total = 0f32;
        for (b, v) in w.values.chunks_exact(BLOCK).enumerate() {
            let q = &a.q[b * BLOCK..(b + 1) * BLOCK];
            let sum: i32 = v
                .iter()
                .zip(q)
                .map(|(x, y)| i32::from(*x as i8) * i32::from(*y))
                .sum();
            total += w.d(b) * a.d[b] * sum as f32;
        }
        total
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{BLOCK, BlockKind, BlockRow, QuantizedRow};
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    pub(super) fn vnni_available() -> bool {
        available()
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
    }

    // Every kernel sums blocks into two accumulators, even blocks and odd blocks, so that two
    // chains of multiply-adds overlap; all of them in the same order, so that the AVX2 and VNNI
    // kernels give the same bits.

    /// 4-bit blocks `b` and, if `pair`, `b + 1`: `[d_w d_a, m_w s_a]` of each as lanes 0-1 and 2-3
    /// (zero for a missing second block).
    ///
    /// # Safety
    /// AVX2, FMA and F16C must be present; the blocks must be in bounds of `w` and `a`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_scales(w: &BlockRow, a: &QuantizedRow, b: usize, pair: bool) -> __m128 {
        let act = if w.kind == BlockKind::Q4_0 {
            &a.ds8
        } else {
            &a.ds
        };
        // SAFETY: the caller keeps blocks b (and b + 1) in bounds: 2 (4) f16 scales, 2 (4) floats.
        unsafe {
            let (h, x) = if pair {
                (
                    _mm_loadl_epi64(w.scales.as_ptr().add(2 * b).cast()),
                    _mm_loadu_ps(act.as_ptr().add(2 * b)),
                )
            } else {
                (
                    _mm_cvtsi32_si128(w.scales.as_ptr().add(2 * b).cast::<i32>().read_unaligned()),
                    _mm_castsi128_ps(_mm_loadl_epi64(act.as_ptr().add(2 * b).cast())),
                )
            };
            _mm_mul_ps(_mm_cvtph_ps(h), x)
        }
    }

    /// The 8-bit dot product over blocks in pairs, with `$sums` (AVX2 or VNNI) for each block's
    /// 32 products: a macro rather than a function so that both kernels inline their own code.
    /// Expands to unsafe calls whose features the enclosing function must enable.
    macro_rules! q8_dot {
        ($sums:ident, $w:expr, $a:expr) => {{
            let (w, a) = ($w, $a);
            let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let blocks = w.blocks();
            let mut b = 0;
            while b + 2 <= blocks {
                let (s0, s1, scales) =
                    ($sums(w, a, b), $sums(w, a, b + 1), q8_scales(w, a, b, true));
                even = _mm256_fmadd_ps(s0, _mm256_broadcastss_ps(scales), even);
                odd = _mm256_fmadd_ps(s1, _mm256_broadcastss_ps(_mm_movehdup_ps(scales)), odd);
                b += 2;
            }
            if b < blocks {
                let (s, scales) = ($sums(w, a, b), q8_scales(w, a, b, false));
                even = _mm256_fmadd_ps(s, _mm256_broadcastss_ps(scales), even);
            }
            hsum(_mm256_add_ps(even, odd))
        }};
    }

    /// 8-bit blocks `b` and, if `pair`, `b + 1`: `d_w d_a` of each as lanes 0 and 1.
    ///
    /// # Safety
    /// As [`q4_scales`].
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_scales(w: &BlockRow, a: &QuantizedRow, b: usize, pair: bool) -> __m128 {
        // SAFETY: the caller keeps blocks b (and b + 1) in bounds.
        unsafe {
            let (h, x) = if pair {
                (
                    _mm_cvtsi32_si128(w.scales.as_ptr().add(b).cast::<i32>().read_unaligned()),
                    _mm_castsi128_ps(_mm_loadl_epi64(a.d.as_ptr().add(b).cast())),
                )
            } else {
                (
                    _mm_cvtsi32_si128(i32::from(*w.scales.get_unchecked(b))),
                    _mm_set_ss(*a.d.get_unchecked(b)),
                )
            };
            _mm_mul_ps(_mm_cvtph_ps(h), x)
        }
    }

    /// The even and odd sums, plus the offsets gathered in lanes 1 and 3 of `offsets`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn finish(even: __m256, odd: __m256, offsets: __m128) -> f32 {
        let even_offsets = _mm_cvtss_f32(_mm_movehdup_ps(offsets));
        let odd_offsets = _mm_cvtss_f32(_mm_shuffle_ps(offsets, offsets, 0xff));
        hsum(_mm256_add_ps(even, odd)) + (even_offsets + odd_offsets)
    }

    /// As [`dot_q4`], two blocks per round, the u8 × i8 products summed by one VNNI instruction.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn dot_q4_vnni(w: &BlockRow, a: &QuantizedRow) -> f32 {
        let low = _mm256_set1_epi8(0x0f);
        let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut offsets = _mm_setzero_ps();
        let blocks = w.blocks();
        let mut b = 0;
        while b + 2 <= blocks {
            // SAFETY: blocks b and b + 1 (32 value bytes, 64 activations, scales) are in bounds.
            let (packed, q0, q1, scales) = unsafe {
                (
                    _mm256_loadu_si256(w.values.as_ptr().add(b * BLOCK / 2).cast()),
                    _mm256_loadu_si256(a.q.as_ptr().add(b * BLOCK).cast()),
                    _mm256_loadu_si256(a.q.as_ptr().add((b + 1) * BLOCK).cast()),
                    q4_scales(w, a, b, true),
                )
            };
            let lo = _mm256_and_si256(packed, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
            let x0 = _mm256_permute2x128_si256(lo, hi, 0x20);
            let x1 = _mm256_permute2x128_si256(lo, hi, 0x31);
            let s0 = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), x0, q0));
            let s1 = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), x1, q1));
            even = _mm256_fmadd_ps(s0, _mm256_broadcastss_ps(scales), even);
            odd = _mm256_fmadd_ps(
                s1,
                _mm256_broadcastss_ps(_mm_movehl_ps(scales, scales)),
                odd,
            );
            offsets = _mm_add_ps(offsets, scales);
            b += 2;
        }
        if b < blocks {
            // SAFETY: the last block's 16 value bytes, 32 activations and scales are in bounds.
            let (packed, q, scales) = unsafe {
                (
                    _mm_loadu_si128(w.values.as_ptr().add(b * BLOCK / 2).cast()),
                    _mm256_loadu_si256(a.q.as_ptr().add(b * BLOCK).cast()),
                    q4_scales(w, a, b, false),
                )
            };
            let lo = _mm_and_si128(packed, _mm_set1_epi8(0x0f));
            let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0f));
            let x = _mm256_set_m128i(hi, lo);
            let sums = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), x, q));
            even = _mm256_fmadd_ps(sums, _mm256_broadcastss_ps(scales), even);
            offsets = _mm_add_ps(offsets, scales);
        }
        finish(even, odd, offsets)
    }

    /// Block `b`'s 32 products `q_w q_a` of an 8-bit row, in 8 lanes, by one VNNI instruction.
    ///
    /// # Safety
    /// AVX-512 VNNI and VL must be present; block `b` must be in bounds of `w` and `a`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn q8_sums_vnni(w: &BlockRow, a: &QuantizedRow, b: usize) -> __m256 {
        // SAFETY: block b's 32 weight bytes and 32 activations are in bounds.
        let (x, q) = unsafe {
            (
                _mm256_loadu_si256(w.values.as_ptr().add(b * BLOCK).cast()),
                _mm256_loadu_si256(a.q.as_ptr().add(b * BLOCK).cast()),
            )
        };
        let sums = _mm256_dpbusd_epi32(
            _mm256_setzero_si256(),
            _mm256_sign_epi8(x, x),
            _mm256_sign_epi8(q, x),
        );
        _mm256_cvtepi32_ps(sums)
    }

    /// As [`dot_q8`], the products summed by one VNNI instruction per block.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn dot_q8_vnni(w: &BlockRow, a: &QuantizedRow) -> f32 {
        // SAFETY: the features are enabled here; the macro keeps its blocks in bounds.
        unsafe { q8_dot!(q8_sums_vnni, w, a) }
    }

    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Block `b`'s 32 products `q_w q_a` of a 4-bit row, in 8 lanes.
    ///
    /// # Safety
    /// AVX2 must be present; block `b` must be in bounds of `w` and `a`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_sums(w: &BlockRow, a: &QuantizedRow, b: usize) -> __m256 {
        let low = _mm_set1_epi8(0x0f);
        // SAFETY: block b's 16 value bytes and 32 activations are in bounds.
        let (packed, q) = unsafe {
            (
                _mm_loadu_si128(w.values.as_ptr().add(b * BLOCK / 2).cast()),
                _mm256_loadu_si256(a.q.as_ptr().add(b * BLOCK).cast()),
            )
        };
        let lo = _mm_and_si128(packed, low);
        let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low);
        let x = _mm256_set_m128i(hi, lo);
        let pairs = _mm256_maddubs_epi16(x, q);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// Σ over blocks of `d_w d_a Σ q_w q_a + m_w s_a`, q_w the 4-bit values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q4(w: &BlockRow, a: &QuantizedRow) -> f32 {
        let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut offsets = _mm_setzero_ps();
        let blocks = w.blocks();
        let mut b = 0;
        while b + 2 <= blocks {
            // SAFETY: blocks b and b + 1 are in bounds.
            let (s0, s1, scales) = unsafe {
                (
                    q4_sums(w, a, b),
                    q4_sums(w, a, b + 1),
                    q4_scales(w, a, b, true),
                )
            };
            even = _mm256_fmadd_ps(s0, _mm256_broadcastss_ps(scales), even);
            odd = _mm256_fmadd_ps(
                s1,
                _mm256_broadcastss_ps(_mm_movehl_ps(scales, scales)),
                odd,
            );
            offsets = _mm_add_ps(offsets, scales);
            b += 2;
        }
        if b < blocks {
            // SAFETY: block b is in bounds.
            let (s, scales) = unsafe { (q4_sums(w, a, b), q4_scales(w, a, b, false)) };
            even = _mm256_fmadd_ps(s, _mm256_broadcastss_ps(scales), even);
            offsets = _mm_add_ps(offsets, scales);
        }
        finish(even, odd, offsets)
    }

    /// Block `b`'s 32 products `q_w q_a` of an 8-bit row, in 8 lanes.
    ///
    /// # Safety
    /// AVX2 must be present; block `b` must be in bounds of `w` and `a`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_sums(w: &BlockRow, a: &QuantizedRow, b: usize) -> __m256 {
        // SAFETY: block b's 32 weight bytes and 32 activations are in bounds.
        let (x, q) = unsafe {
            (
                _mm256_loadu_si256(w.values.as_ptr().add(b * BLOCK).cast()),
                _mm256_loadu_si256(a.q.as_ptr().add(b * BLOCK).cast()),
            )
        };
        // maddubs multiplies unsigned by signed: move x's sign onto q.
        let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(q, x));
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// Σ over blocks of `d_w d_a Σ q_w q_a`, both signed 8-bit.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q8(w: &BlockRow, a: &QuantizedRow) -> f32 {
        // SAFETY: as in `dot_q8_vnni`.
        unsafe { q8_dot!(q8_sums, w, a) }
    }
}

/// `x W^T` as a candle op over `[.., cols]` f32 input on the CPU.
pub struct BlockMatmul<'a>(pub &'a BlockMatrix);

impl CustomOp1 for BlockMatmul<'_> {
    fn name(&self) -> &'static str {
        "block-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            bail!("block-matmul needs f32 input");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("block-matmul needs contiguous input");
        };
        let dims = layout.dims();
        let (rows, cols) = self.0.dims();
        if dims.last() != Some(&cols) {
            bail!("block-matmul: input {dims:?} does not end in {cols}");
        }
        let x = &data[start..end];
        let n = x.len() / cols;
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = rows;
        }
        Ok((CpuStorage::F32(self.0.matmul(x, n)), Shape::from(out_dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rng::SeededRng;

    fn f16_bytes(v: f32) -> [u8; 2] {
        half::f16::from_f32(v).to_bits().to_le_bytes()
    }

    /// Random blocks in the GGUF layout.
    fn random_blocks(kind: BlockKind, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut rng = SeededRng::new(seed);
        let mut raw = Vec::new();
        for _ in 0..rows * cols / BLOCK {
            raw.extend(f16_bytes((0.001 + 0.05 * rng.f64()) as f32));
            if kind == BlockKind::Q4_1 {
                raw.extend(f16_bytes((0.4 * rng.f64() - 0.2) as f32));
            }
            for _ in 0..kind.value_bytes() {
                raw.push(rng.below(256) as u8);
            }
        }
        raw
    }

    #[test]
    fn dequantize_follows_the_gguf_block_formulas() -> Result<()> {
        let mut raw = Vec::new();
        raw.extend(f16_bytes(0.5));
        raw.extend(f16_bytes(-1.0));
        raw.extend([0x21; 16]);
        let m = BlockMatrix::from_bytes(BlockKind::Q4_1, 1, 32, &raw)?;
        let w = m.dequantize();
        // Low nibble 1 → 0.5 - 1, high nibble 2 → 1.0 - 1.
        assert_eq!((w[0], w[16]), (-0.5, 0.0));
        let mut raw = f16_bytes(0.25).to_vec();
        raw.extend([0x0f; 16]);
        let w = BlockMatrix::from_bytes(BlockKind::Q4_0, 1, 32, &raw)?.dequantize();
        assert_eq!((w[0], w[16]), (0.25 * 7.0, 0.25 * -8.0));
        let mut raw = f16_bytes(2.0).to_vec();
        raw.extend([0xfe; 32]);
        let w = BlockMatrix::from_bytes(BlockKind::Q8_0, 1, 32, &raw)?.dequantize();
        assert_eq!(w[31], -4.0);
        Ok(())
    }

    #[test]
    fn gathered_rows_are_the_dequantized_rows() -> Result<()> {
        let m = BlockMatrix::from_bytes(
            BlockKind::Q4_1,
            5,
            64,
            &random_blocks(BlockKind::Q4_1, 5, 64, 4),
        )?;
        let all = m.dequantize();
        assert_eq!(
            m.gather_rows(&[3, 0, 3])?,
            [&all[192..256], &all[..64], &all[192..256]].concat()
        );
        assert!(
            m.gather_rows(&[5])
                .is_err_and(|e| e.to_string().contains("token id 5"))
        );
        Ok(())
    }

    #[test]
    fn products_match_the_dequantized_weights_and_the_portable_code() -> Result<()> {
        let (rows, cols) = (70, 96);
        let mut rng = SeededRng::new(3);
        let x: Vec<f32> = (0..3 * cols)
            .map(|_| (4.0 * rng.f64() - 2.0) as f32)
            .collect();
        for kind in [BlockKind::Q4_0, BlockKind::Q4_1, BlockKind::Q8_0] {
            let m = BlockMatrix::from_bytes(kind, rows, cols, &random_blocks(kind, rows, cols, 9))?;
            let w = m.dequantize();
            let y = m.matmul(&x, 3);
            for r in 0..3 {
                let a = QuantizedRow::new(&x[r * cols..(r + 1) * cols]);
                for o in 0..rows {
                    let exact: f32 = (0..cols).map(|i| w[o * cols + i] * x[r * cols + i]).sum();
                    let got = y[r * rows + o];
                    // 8-bit activations: within about 1% of the row's magnitude.
                    let scale: f32 = (0..cols)
                        .map(|i| (w[o * cols + i] * x[r * cols + i]).abs())
                        .sum();
                    assert!(
                        (got - exact).abs() <= 0.01 * scale,
                        "{kind:?} {got} vs {exact}"
                    );
                    let row = m.row(o);
                    let portable = match kind {
                        BlockKind::Q8_0 => portable::dot_q8(&row, &a),
                        _ => portable::dot_q4(&row, &a),
                    };
                    assert!(
                        (got - portable).abs() <= 1e-4 * scale.max(1.0),
                        "{kind:?} simd {got} vs portable {portable}"
                    );
                }
            }
        }
        Ok(())
    }

    #[cfg(target_arch = "x86_64")]
    type Dot = unsafe fn(&BlockRow, &QuantizedRow) -> f32;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_and_vnni_kernels_agree_with_the_portable_code() -> Result<()> {
        // An odd and an even number of blocks: the kernels take blocks in pairs.
        for (kind, cols) in [BlockKind::Q4_0, BlockKind::Q4_1, BlockKind::Q8_0]
            .into_iter()
            .flat_map(|kind| [(kind, 160), (kind, 192)])
        {
            let rows = 4;
            let mut rng = SeededRng::new(5);
            let x: Vec<f32> = (0..cols).map(|_| (4.0 * rng.f64() - 2.0) as f32).collect();
            let a = QuantizedRow::new(&x);
            let m = BlockMatrix::from_bytes(kind, rows, cols, &random_blocks(kind, rows, cols, 2))?;
            for r in 0..rows {
                let w = m.row(r);
                let (portable, dot_avx2, dot_vnni): (f32, Dot, Dot) = match kind {
                    BlockKind::Q8_0 => (portable::dot_q8(&w, &a), simd::dot_q8, simd::dot_q8_vnni),
                    _ => (portable::dot_q4(&w, &a), simd::dot_q4, simd::dot_q4_vnni),
                };
                let tol = 1e-4 * portable.abs().max(1.0);
                if simd::available() {
                    // SAFETY: the features were detected.
                    let got = unsafe { dot_avx2(&w, &a) };
                    assert!(
                        (got - portable).abs() <= tol,
                        "{kind:?} avx2 {got} vs {portable}"
                    );
                }
                if simd::vnni_available() {
                    // SAFETY: the features were detected.
                    let (got, avx2) = unsafe { (dot_vnni(&w, &a), dot_avx2(&w, &a)) };
                    assert!(
                        (got - portable).abs() <= tol,
                        "{kind:?} vnni {got} vs {portable}"
                    );
                    assert_eq!(
                        got.to_bits(),
                        avx2.to_bits(),
                        "{kind:?}: vnni and avx2 differ"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_truncated_tensor_is_refused() {
        let err = BlockMatrix::from_bytes(BlockKind::Q4_1, 2, 32, &[0; 39]);
        assert!(err.is_err_and(|e| e.to_string().contains("needs 40 bytes, has 39")));
    }
}
