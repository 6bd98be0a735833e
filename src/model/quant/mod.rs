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
use candle_core::{Result, bail};
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
    #[inline]
    fn scales_per_block(self) -> usize {
        match self {
            BlockKind::Q4_0 | BlockKind::Q4_1 => 2,
            BlockKind::Q8_0 => 1,
        }
    }

    /// Bytes of one block's quantized values.
    #[inline]
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
#[inline]
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
    #[inline]
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
}

/// One group's blocks. Its accessors, and those of the block kinds, are marked `#[inline]`: the
/// kernels that call them for every block live in other modules (and code-generation units).
struct Group<'a> {
    kind: BlockKind,
    blocks: usize,
    values: &'a [u8],
    scales: &'a [u16],
}

impl Group<'_> {
    /// Lane `l`'s scale in block `b`.
    #[inline]
    fn d(&self, b: usize, l: usize) -> f32 {
        f16_table()[usize::from(self.scales[b * self.kind.scales_per_block() * GROUP + l])]
    }

    /// The second number kept for lane `l` in block `b` (Q4_1's `m`, Q4_0's `d`).
    #[inline]
    fn second(&self, b: usize, l: usize) -> f32 {
        f16_table()[usize::from(self.scales[(2 * b + 1) * GROUP + l])]
    }

    /// Lane `l`'s offset in block `b`: `d · q + m` for Q4_1, `d · (q - 8)` for Q4_0.
    #[inline]
    fn m(&self, b: usize, l: usize) -> f32 {
        match self.kind {
            BlockKind::Q4_0 => -8.0 * self.d(b, l),
            BlockKind::Q4_1 => self.second(b, l),
            BlockKind::Q8_0 => 0.0,
        }
    }

    /// Byte `j` of lane `l`'s block `b`, as in the file.
    #[inline]
    fn byte(&self, b: usize, l: usize, j: usize) -> u8 {
        let block = b * GROUP * self.kind.value_bytes();
        self.values[block + (j / LANE_BYTES) * GROUP * LANE_BYTES + l * LANE_BYTES + j % LANE_BYTES]
    }
}

/// 1.5 · 2^23, and its bits: `x + MAGIC` holds `round(x)` in its low bits for `|x| < 2^22`.
const MAGIC: f32 = 12_582_912.0;
const MAGIC_BITS: i32 = 0x4b40_0000;

/// An activation row rounded to 8 bits per block: `x ≈ d · q`, and `s = d · Σq` per block. As in
/// ggml, `d` and `s` are rounded to f16 and the values to the nearest integer, ties to even.
pub(crate) struct QuantizedRow {
    q: Vec<i8>,
    d: Vec<f32>,
    /// `s` per block: the offset of Q4_1, whose weights are `d q + m`...
    s: Vec<f32>,
    /// ...and `-8 s` for Q4_0, whose kept second number is `d` and offset `-8 d`.
    s8: Vec<f32>,
}

impl QuantizedRow {
    pub(crate) fn new(x: &[f32]) -> QuantizedRow {
        let blocks = x.len() / BLOCK;
        let mut out = QuantizedRow {
            q: Vec::with_capacity(x.len()),
            d: Vec::with_capacity(blocks),
            s: Vec::with_capacity(blocks),
            s8: Vec::with_capacity(blocks),
        };
        out.set(x);
        out
    }

    /// Makes this row `x` rounded, in place of what it held (its room kept: a decode step
    /// rounds thousands of rows).
    pub(crate) fn set(&mut self, x: &[f32]) {
        self.q.clear();
        self.d.clear();
        self.s.clear();
        self.s8.clear();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                // SAFETY: AVX-512F and BW were detected at run time.
                return unsafe { self.round_avx512(x) };
            }
            if is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected at run time.
                return unsafe { self.round_avx2(x) };
            }
        }
        self.round(x);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx2")]
    fn round_avx512(&mut self, x: &[f32]) {
        self.round(x);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn round_avx2(&mut self, x: &[f32]) {
        self.round(x);
    }

    /// The rounding of [`Self::set`], inlined into each variant so that it compiles for its
    /// vector features (the same bits in each: every operation is exact or rounded once).
    #[inline(always)]
    fn round(&mut self, x: &[f32]) {
        let out = self;
        let to_f16 = |v: f32| half::f16::from_f32(v).to_f32();
        for block in x.chunks_exact(BLOCK) {
            // Plain comparisons in eight lanes, so that the loop vectorizes.
            let mut lanes = [0f32; 8];
            for chunk in block.chunks_exact(8) {
                for (m, v) in lanes.iter_mut().zip(chunk) {
                    let a = v.abs();
                    *m = if a > *m { a } else { *m };
                }
            }
            let amax = lanes.iter().fold(0f32, |a, v| a.max(*v));
            let d = amax / 127.0;
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let mut q = [0i8; BLOCK];
            for (q, v) in q.iter_mut().zip(block) {
                // Adding 1.5 · 2^23 rounds to the nearest integer, ties to even (|v · inv| ≤
                // 127), and leaves it in the low bits of the sum.
                *q = ((v * inv + MAGIC).to_bits() as i32 - MAGIC_BITS) as i8;
            }
            let sum: i32 = q.iter().map(|q| i32::from(*q)).sum();
            out.q.extend_from_slice(&q);
            let (d, s) = (to_f16(d), to_f16(d * sum as f32));
            out.d.push(d);
            out.s.push(s);
            out.s8.push(-8.0 * s);
        }
    }
}

mod kernels;
pub mod products;

#[cfg(test)]
mod tests;
