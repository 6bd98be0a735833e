//! Weights kept in GGUF's legacy 4- and 8-bit blocks (Q4_0, Q4_1, Q8_0) and the matrix-vector
//! product that decoding on the CPU spends its time in. As in llama.cpp, the activations are
//! rounded to 8 bits per block of 32 and the products are integer dot products, split over the
//! cores; candle's own kernel for these types is scalar.
//!
//! The blocks of eight consecutive rows are interleaved, four bytes of each row in turn, so that
//! one 256-bit integer multiply-add takes four values of eight rows against four activations
//! broadcast: each lane sums one row, no horizontal sums are needed, and each activation is
//! loaded once per eight rows. That doubles what a core computes per byte of weights, which
//! makes the product wait on memory rather than on arithmetic.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, bail};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Values per block in every format here.
const BLOCK: usize = 32;

/// Rows interleaved together.
pub const GROUP: usize = 8;

/// Bytes of one row that the kernels take at a time (an i32 lane's four u8 × i8 products).
const LANE_BYTES: usize = 4;

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

/// A `[rows, cols]` weight as blocks, rows in groups of [`GROUP`] (the last one padded with
/// zero rows). Per group and block, in two streams:
/// - `values`: for each four bytes of a block, those four bytes of each of the group's rows
///   (for the 4-bit kinds, byte `j` holds value `j` in its low nibble and `j + 16` in its high
///   one, as in the file);
/// - `scales`: the rows' f16 scales `d`, then for Q4_0 and Q4_1 their second numbers (Q4_1's
///   offset `m`; Q4_0's `d` again, its offset being `-8 d`).
///
/// Keeping the scales in f16 reads 20 bytes per Q4_1 block instead of 24: decoding streams every
/// weight once per token and waits on memory.
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
        let blocks = cols / BLOCK;
        if !cols.is_multiple_of(BLOCK) || raw.len() != rows * blocks * kind.file_bytes() {
            bail!(
                "{} tensor [{rows}, {cols}] needs {} bytes, has {}",
                kind.name(),
                rows * blocks * kind.file_bytes(),
                raw.len()
            );
        }
        let groups = rows.div_ceil(GROUP);
        let (fb, vb, spb) = (
            kind.file_bytes(),
            kind.value_bytes(),
            kind.scales_per_block(),
        );
        let mut out = BlockMatrix {
            kind,
            rows,
            cols,
            scales: Vec::with_capacity(groups * blocks * GROUP * spb),
            values: Vec::with_capacity(groups * blocks * GROUP * vb),
        };
        // Row `r`'s block `b` in the file; `None` for a padding row.
        let block = |r: usize, b: usize| {
            (r < rows).then(|| &raw[(r * blocks + b) * fb..(r * blocks + b + 1) * fb])
        };
        let half = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
        for g in 0..groups {
            for b in 0..blocks {
                let members: Vec<Option<&[u8]>> =
                    (0..GROUP).map(|l| block(g * GROUP + l, b)).collect();
                let values_of = |bytes: &[u8]| match kind {
                    BlockKind::Q4_1 => bytes[4..].to_vec(),
                    BlockKind::Q4_0 | BlockKind::Q8_0 => bytes[2..].to_vec(),
                };
                let values: Vec<Vec<u8>> = members
                    .iter()
                    .map(|m| m.map_or_else(|| vec![0; vb], values_of))
                    .collect();
                for k in 0..vb / LANE_BYTES {
                    for v in &values {
                        out.values
                            .extend_from_slice(&v[k * LANE_BYTES..(k + 1) * LANE_BYTES]);
                    }
                }
                out.scales
                    .extend(members.iter().map(|m| m.map_or(0, |m| half(&m[0..2]))));
                match kind {
                    BlockKind::Q4_0 => out
                        .scales
                        .extend(members.iter().map(|m| m.map_or(0, |m| half(&m[0..2])))),
                    BlockKind::Q4_1 => out
                        .scales
                        .extend(members.iter().map(|m| m.map_or(0, |m| half(&m[2..4])))),
                    BlockKind::Q8_0 => {}
                }
            }
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

    /// Groups of [`GROUP`] rows.
    pub fn groups(&self) -> usize {
        self.rows.div_ceil(GROUP)
    }

    /// The weight as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        // A group's rows at a time, reading its values in the order they are stored; groups
        // in parallel (prefill dequantizes every weight it multiplies).
        out.par_chunks_mut(GROUP * self.cols)
            .enumerate()
            .for_each(|(g, rows)| self.dequantize_group(g, rows));
        out
    }

    /// Group `g`'s rows (`out` holds the real ones, row-major).
    fn dequantize_group(&self, g: usize, out: &mut [f32]) {
        let group = self.group(g);
        let (vb, cols) = (self.kind.value_bytes(), self.cols);
        for b in 0..group.blocks {
            let block = &group.values[b * GROUP * vb..(b + 1) * GROUP * vb];
            for (lane, row) in out.chunks_exact_mut(cols).enumerate() {
                let (d, m) = (group.d(b, lane), group.m(b, lane));
                let row = &mut row[b * BLOCK..(b + 1) * BLOCK];
                for (k, step) in block.chunks_exact(GROUP * LANE_BYTES).enumerate() {
                    let bytes = &step[lane * LANE_BYTES..(lane + 1) * LANE_BYTES];
                    for (t, q) in bytes.iter().enumerate() {
                        let j = k * LANE_BYTES + t;
                        match self.kind {
                            BlockKind::Q8_0 => row[j] = d * f32::from(*q as i8),
                            BlockKind::Q4_0 | BlockKind::Q4_1 => {
                                row[j] = d * f32::from(q & 0x0f) + m;
                                row[j + BLOCK / 2] = d * f32::from(q >> 4) + m;
                            }
                        }
                    }
                }
            }
        }
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

    /// Group `g`'s values and scales.
    fn group(&self, g: usize) -> Group<'_> {
        let blocks = self.cols / BLOCK;
        let (vb, spb) = (self.kind.value_bytes(), self.kind.scales_per_block());
        let (v, s) = (blocks * GROUP * vb, blocks * GROUP * spb);
        Group {
            kind: self.kind,
            blocks,
            values: &self.values[g * v..(g + 1) * v],
            scales: &self.scales[g * s..(g + 1) * s],
        }
    }

    fn dequantize_row(&self, row: usize, out: &mut Vec<f32>) {
        let (group, lane) = (self.group(row / GROUP), row % GROUP);
        let mut bytes = [0u8; BLOCK];
        let vb = self.kind.value_bytes();
        for b in 0..group.blocks {
            let (d, m) = (group.d(b, lane), group.m(b, lane));
            for (j, byte) in bytes[..vb].iter_mut().enumerate() {
                *byte = group.byte(b, lane, j);
            }
            match self.kind {
                BlockKind::Q8_0 => out.extend(bytes.iter().map(|q| d * f32::from(*q as i8))),
                BlockKind::Q4_0 | BlockKind::Q4_1 => {
                    out.extend(bytes[..vb].iter().map(|q| d * f32::from(q & 0x0f) + m));
                    out.extend(bytes[..vb].iter().map(|q| d * f32::from(q >> 4) + m));
                }
            }
        }
    }

    /// `y = x W^T` for `x` of `n` rows (`[n, cols]`, row-major); `y` is `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        matmul_many(&[self], x, n).pop().unwrap_or_default()
    }

    /// `out[l] = a · row(GROUP g + l)` for the rows of group `g` (padding rows give 0).
    pub(super) fn dot_group(&self, kernel: Kernel, g: usize, a: &QuantizedRow) -> [f32; GROUP] {
        let w = self.group(g);
        let offsets = match self.kind {
            BlockKind::Q4_0 => &a.s8,
            BlockKind::Q4_1 | BlockKind::Q8_0 => &a.s,
        };
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the kernel's features were detected at run time (`Kernel::detect`); the
            // group and the activations have the same number of blocks.
            Kernel::Vnni => unsafe {
                match self.kind {
                    BlockKind::Q8_0 => simd::dot_q8_vnni(&w, a),
                    BlockKind::Q4_0 | BlockKind::Q4_1 => simd::dot_q4_vnni(&w, a, offsets),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe {
                match self.kind {
                    BlockKind::Q8_0 => simd::dot_q8_avx2(&w, a),
                    BlockKind::Q4_0 | BlockKind::Q4_1 => simd::dot_q4_avx2(&w, a, offsets),
                }
            },
            Kernel::Portable => portable::dot(&w, a, offsets),
        }
    }
}

/// The dot-product code this CPU runs, detected once per product rather than once per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Kernel {
    pub(super) fn detect() -> Kernel {
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
    let total_groups: usize = weights.iter().map(|w| w.groups()).sum();
    // Groups in chunks per task; each task writes `n` values per padded weight row.
    let per_task = (total_groups / (4 * rayon::current_num_threads())).clamp(2, 128);
    let mut by_weight: Vec<Vec<f32>> = weights
        .iter()
        .map(|w| vec![0f32; w.groups() * GROUP * n])
        .collect();
    let tasks: Vec<(&BlockMatrix, usize, &mut [f32])> = weights
        .iter()
        .zip(by_weight.iter_mut())
        .flat_map(|(w, out)| {
            out.chunks_mut(per_task * GROUP * n)
                .enumerate()
                .map(move |(t, chunk)| (*w, t * per_task, chunk))
        })
        .collect();
    let kernel = Kernel::detect();
    tasks.into_par_iter().for_each(|(w, first, chunk)| {
        for (i, out) in chunk.chunks_exact_mut(GROUP * n).enumerate() {
            for (j, a) in acts.iter().enumerate() {
                let y = w.dot_group(kernel, first + i, a);
                for (l, v) in y.iter().enumerate() {
                    out[l * n + j] = *v;
                }
            }
        }
    });
    weights
        .iter()
        .zip(by_weight)
        .map(|(w, values)| {
            if n == 1 {
                let mut values = values;
                values.truncate(w.rows);
                return values;
            }
            let mut y = vec![0f32; n * w.rows];
            for (row, v) in values.chunks_exact(n).take(w.rows).enumerate() {
                for (r, value) in v.iter().enumerate() {
                    y[r * w.rows + row] = *value;
                }
            }
            y
        })
        .collect()
}

/// One group's blocks.
struct Group<'a> {
    kind: BlockKind,
    blocks: usize,
    values: &'a [u8],
    scales: &'a [u16],
}

impl Group<'_> {
    /// Lane `l`'s scale in block `b`.
    fn d(&self, b: usize, l: usize) -> f32 {
        f16_table()[usize::from(self.scales[b * self.kind.scales_per_block() * GROUP + l])]
    }

    /// The second number kept for lane `l` in block `b` (Q4_1's `m`, Q4_0's `d`).
    fn second(&self, b: usize, l: usize) -> f32 {
        f16_table()[usize::from(self.scales[(2 * b + 1) * GROUP + l])]
    }

    /// Lane `l`'s offset in block `b`: `d · q + m` for Q4_1, `d · (q - 8)` for Q4_0.
    fn m(&self, b: usize, l: usize) -> f32 {
        match self.kind {
            BlockKind::Q4_0 => -8.0 * self.d(b, l),
            BlockKind::Q4_1 => self.second(b, l),
            BlockKind::Q8_0 => 0.0,
        }
    }

    /// Byte `j` of lane `l`'s block `b`, as in the file.
    fn byte(&self, b: usize, l: usize, j: usize) -> u8 {
        let block = b * GROUP * self.kind.value_bytes();
        self.values[block + (j / LANE_BYTES) * GROUP * LANE_BYTES + l * LANE_BYTES + j % LANE_BYTES]
    }
}

/// An activation row rounded to 8 bits per block: `x ≈ d · q`, and `s = d · Σq` per block. As in
/// ggml, `d` and `s` are rounded to f16 and the values to the nearest integer, ties to even.
pub(super) struct QuantizedRow {
    q: Vec<i8>,
    d: Vec<f32>,
    /// `s` per block: the offset of Q4_1, whose weights are `d q + m`...
    s: Vec<f32>,
    /// ...and `-8 s` for Q4_0, whose kept second number is `d` and offset `-8 d`.
    s8: Vec<f32>,
}

impl QuantizedRow {
    pub(super) fn new(x: &[f32]) -> QuantizedRow {
        let blocks = x.len() / BLOCK;
        let mut out = QuantizedRow {
            q: Vec::with_capacity(x.len()),
            d: Vec::with_capacity(blocks),
            s: Vec::with_capacity(blocks),
            s8: Vec::with_capacity(blocks),
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
            out.s.push(s);
            out.s8.push(-8.0 * s);
        }
        out
    }
}

/// Every kernel computes, per lane (row) `l`, the exact integer sum `Σ q_w q_a` of each block and
/// then, in this order, `acc = fma(sum, d_l · d_a, acc)`, `off = fma(m_l, offset_a, off)`, and
/// returns `acc + off`: the SIMD lanes and this code give the same bits.
mod portable {
    use super::{BLOCK, BlockKind, GROUP, Group, QuantizedRow};

    pub(super) fn dot(w: &Group, a: &QuantizedRow, offsets: &[f32]) -> [f32; GROUP] {
        let vb = w.kind.value_bytes();
        let mut out = [0f32; GROUP];
        for (l, out) in out.iter_mut().enumerate() {
            let (mut acc, mut off) = (0f32, 0f32);
            for (b, (q, offset)) in a.q.chunks_exact(BLOCK).zip(offsets).enumerate() {
                let sum: i32 = (0..vb)
                    .map(|j| {
                        let byte = w.byte(b, l, j);
                        match w.kind {
                            BlockKind::Q8_0 => i32::from(byte as i8) * i32::from(q[j]),
                            BlockKind::Q4_0 | BlockKind::Q4_1 => {
                                i32::from(byte & 0x0f) * i32::from(q[j])
                                    + i32::from(byte >> 4) * i32::from(q[j + BLOCK / 2])
                            }
                        }
                    })
                    .sum();
                acc = (sum as f32).mul_add(w.d(b, l) * a.d[b], acc);
                if w.kind != BlockKind::Q8_0 {
                    off = w.second(b, l).mul_add(*offset, off);
                }
            }
            *out = acc + off;
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{BLOCK, GROUP, Group, LANE_BYTES, QuantizedRow};
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

    /// The loop over a group's blocks, shared by the kernels: `$sums(b)` gives block `b`'s
    /// eight exact integer sums; the 4-bit kinds add their offsets. A macro so that each kernel
    /// inlines its own code; it expands to unsafe calls whose features the enclosing function
    /// must enable.
    macro_rules! group_dot {
        ($w:expr, $a:expr, $offsets:expr, |$b:ident| $sums:expr) => {{
            let (w, a): (&Group, &QuantizedRow) = ($w, $a);
            let offsets: Option<&[f32]> = $offsets;
            let (mut acc, mut off) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let per_block = w.kind.scales_per_block() * GROUP;
            for $b in 0..w.blocks {
                let sums = _mm256_cvtepi32_ps($sums);
                // SAFETY: block b's scales are in the group (`per_block` of them).
                let d = unsafe { load8_f16(w.scales, $b * per_block) };
                acc = _mm256_fmadd_ps(sums, _mm256_mul_ps(d, _mm256_set1_ps(a.d[$b])), acc);
                if let Some(offsets) = offsets {
                    // SAFETY: as above; the second eight follow the scales.
                    let m = unsafe { load8_f16(w.scales, $b * per_block + GROUP) };
                    off = _mm256_fmadd_ps(m, _mm256_set1_ps(offsets[$b]), off);
                }
            }
            let mut out = [0f32; GROUP];
            // SAFETY: eight floats fit `out`.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(acc, off)) };
            out
        }};
    }

    /// Block `b` of a 4-bit group: per four-byte step, the low nibbles pair with activations
    /// `4k..4k + 4` and the high ones with `16 + 4k..`; two chains of sums.
    macro_rules! q4_sums {
        ($dp:ident, $w:expr, $a:expr, $b:expr) => {{
            let (w, a, b): (&Group, &QuantizedRow, usize) = ($w, $a, $b);
            let low = _mm256_set1_epi8(0x0f);
            let (mut lo_sum, mut hi_sum) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            let base = b * GROUP * (BLOCK / 2);
            for k in 0..BLOCK / 2 / LANE_BYTES {
                // SAFETY: the four steps of block b lie in the group's values and activations.
                let (packed, q_lo, q_hi) = unsafe {
                    (
                        load32(w.values, base + k * GROUP * LANE_BYTES),
                        broadcast4(&a.q, b * BLOCK + k * LANE_BYTES),
                        broadcast4(&a.q, b * BLOCK + BLOCK / 2 + k * LANE_BYTES),
                    )
                };
                let lo = _mm256_and_si256(packed, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
                lo_sum = $dp(lo_sum, lo, q_lo);
                hi_sum = $dp(hi_sum, hi, q_hi);
            }
            _mm256_add_epi32(lo_sum, hi_sum)
        }};
    }

    /// Block `b` of an 8-bit group: the weights' signs moved onto the activations, since the
    /// instructions multiply unsigned by signed.
    macro_rules! q8_sums {
        ($dp:ident, $w:expr, $a:expr, $b:expr) => {{
            let (w, a, b): (&Group, &QuantizedRow, usize) = ($w, $a, $b);
            let mut sums = [_mm256_setzero_si256(); 2];
            let base = b * GROUP * BLOCK;
            for k in 0..BLOCK / LANE_BYTES {
                // SAFETY: the eight steps of block b lie in the group's values and activations.
                let (x, q) = unsafe {
                    (
                        load32(w.values, base + k * GROUP * LANE_BYTES),
                        broadcast4(&a.q, b * BLOCK + k * LANE_BYTES),
                    )
                };
                sums[k % 2] = $dp(sums[k % 2], _mm256_sign_epi8(x, x), _mm256_sign_epi8(q, x));
            }
            _mm256_add_epi32(sums[0], sums[1])
        }};
    }

    /// # Safety
    /// AVX2, FMA, F16C, AVX-512 VNNI and VL must be present; `a` has the group's blocks.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn dot_q4_vnni(w: &Group, a: &QuantizedRow, offsets: &[f32]) -> [f32; 8] {
        group_dot!(w, a, Some(offsets), |b| q4_sums!(dp_vnni, w, a, b))
    }

    /// # Safety
    /// AVX2, FMA and F16C must be present; `a` has the group's blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q4_avx2(w: &Group, a: &QuantizedRow, offsets: &[f32]) -> [f32; 8] {
        group_dot!(w, a, Some(offsets), |b| q4_sums!(dp_avx2, w, a, b))
    }

    /// # Safety
    /// As [`dot_q4_vnni`].
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn dot_q8_vnni(w: &Group, a: &QuantizedRow) -> [f32; 8] {
        group_dot!(w, a, None, |b| q8_sums!(dp_vnni, w, a, b))
    }

    /// # Safety
    /// As [`dot_q4_avx2`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q8_avx2(w: &Group, a: &QuantizedRow) -> [f32; 8] {
        group_dot!(w, a, None, |b| q8_sums!(dp_avx2, w, a, b))
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
mod tests;
