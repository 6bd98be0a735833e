//! The portable kernel. Every kernel computes, per lane (row) `l`, the exact integer sum
//! `Σ q_w q_a` of each block and then, in this order, `acc = fma(sum, d_l · d_a, acc)`,
//! `off = fma(m_l, offset_a, off)`, and returns `acc + off`: the SIMD lanes and this code give the same bits.

use crate::model::quant::{BLOCK, BlockKind, GROUP, Group, QuantizedRow};

pub(crate) fn dot(w: &Group, a: &QuantizedRow, offsets: &[f32]) -> [f32; GROUP] {
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
