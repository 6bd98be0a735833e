#[cfg(target_arch = "x86_64")]
use super::kernels::x86 as simd;
use super::products::Kernel;
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
fn products_match_the_dequantized_weights() -> Result<()> {
    // 70 rows: the last group has two rows and six padding rows.
    let (rows, cols) = (70, 96);
    let mut rng = SeededRng::new(3);
    let x: Vec<f32> = (0..3 * cols)
        .map(|_| (4.0 * rng.f64() - 2.0) as f32)
        .collect();
    for kind in [BlockKind::Q4_0, BlockKind::Q4_1, BlockKind::Q8_0] {
        let m = BlockMatrix::from_bytes(kind, rows, cols, &random_blocks(kind, rows, cols, 9))?;
        let w = m.dequantize();
        let y = m.matmul(&x, 3);
        assert_eq!(y.len(), 3 * rows);
        for r in 0..3 {
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
            }
        }
        // One row alone gives the same values as within the batch.
        assert_eq!(m.matmul(&x[cols..2 * cols], 1), y[rows..2 * rows]);
    }
    Ok(())
}

/// `x · row r` from the file's bytes in f64: the blocks' integer sums with the rounded
/// activations, scaled, plus the offsets.
fn from_file(kind: BlockKind, raw: &[u8], cols: usize, r: usize, a: &QuantizedRow) -> f64 {
    let blocks = cols / BLOCK;
    let fb = kind.file_bytes();
    let half = |b: &[u8]| f64::from(half::f16::from_le_bytes([b[0], b[1]]).to_f32());
    (0..blocks)
        .map(|b| {
            let block = &raw[(r * blocks + b) * fb..(r * blocks + b + 1) * fb];
            let q = &a.q[b * BLOCK..(b + 1) * BLOCK];
            let (d, values) = (half(block), &block[fb - kind.value_bytes()..]);
            let sum: i64 = match kind {
                BlockKind::Q8_0 => values
                    .iter()
                    .zip(q)
                    .map(|(w, q)| i64::from(*w as i8) * i64::from(*q))
                    .sum(),
                _ => values
                    .iter()
                    .enumerate()
                    .map(|(j, w)| {
                        i64::from(w & 0x0f) * i64::from(q[j])
                            + i64::from(w >> 4) * i64::from(q[j + 16])
                    })
                    .sum(),
            };
            let offset = match kind {
                BlockKind::Q4_1 => half(&block[2..4]) * f64::from(a.s[b]),
                BlockKind::Q4_0 => -8.0 * d * f64::from(a.s[b]),
                BlockKind::Q8_0 => 0.0,
            };
            d * f64::from(a.d[b]) * sum as f64 + offset
        })
        .sum()
}

#[test]
fn products_are_the_file_s_blocks_times_the_rounded_activations() -> Result<()> {
    let (rows, cols) = (13, 160);
    let mut rng = SeededRng::new(8);
    let x: Vec<f32> = (0..cols).map(|_| (4.0 * rng.f64() - 2.0) as f32).collect();
    let a = QuantizedRow::new(&x);
    for kind in [BlockKind::Q4_0, BlockKind::Q4_1, BlockKind::Q8_0] {
        let raw = random_blocks(kind, rows, cols, 4);
        let m = BlockMatrix::from_bytes(kind, rows, cols, &raw)?;
        // The dequantized weights as the file's formulas give them, value by value.
        let half = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        let fb = kind.file_bytes();
        let want: Vec<f32> = raw
            .chunks_exact(fb)
            .flat_map(|block| {
                let (d, values) = (half(block), &block[fb - kind.value_bytes()..]);
                let m = match kind {
                    BlockKind::Q4_1 => half(&block[2..4]),
                    _ => -8.0 * d,
                };
                match kind {
                    BlockKind::Q8_0 => values.iter().map(|q| d * f32::from(*q as i8)).collect(),
                    _ => values
                        .iter()
                        .map(|q| d * f32::from(q & 0x0f) + m)
                        .chain(values.iter().map(|q| d * f32::from(q >> 4) + m))
                        .collect::<Vec<f32>>(),
                }
            })
            .collect();
        assert_eq!(m.dequantize(), want, "{kind:?}");
        let y = m.matmul(&x, 1);
        for (r, got) in y.iter().enumerate() {
            let want = from_file(kind, &raw, cols, r, &a);
            assert!(
                (f64::from(*got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{kind:?} row {r}: {got} vs {want}"
            );
        }
    }
    Ok(())
}

#[test]
fn every_kernel_gives_the_portable_code_s_bits() -> Result<()> {
    let mut kernels = vec![Kernel::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        if simd::available() {
            kernels.push(Kernel::Avx2);
        }
        if simd::vnni_available() {
            kernels.push(Kernel::Vnni);
        }
    }
    for (kind, cols) in [BlockKind::Q4_0, BlockKind::Q4_1, BlockKind::Q8_0]
        .into_iter()
        .flat_map(|kind| [(kind, 32), (kind, 160), (kind, 192)])
    {
        let rows = 19;
        let mut rng = SeededRng::new(5);
        // Large activations too: the 8-bit sums reach their extremes.
        let x: Vec<f32> = (0..cols)
            .map(|i| {
                if i % 7 == 0 {
                    -1e3
                } else {
                    (4.0 * rng.f64() - 2.0) as f32
                }
            })
            .collect();
        // Seven activation rows: a call of four rows and one of three, each row's bits those
        // of the row alone.
        let rows_of_x: Vec<QuantizedRow> = (0..7)
            .map(|r| {
                let xr: Vec<f32> = x.iter().map(|v| v * (1.0 + r as f32 * 0.37)).collect();
                QuantizedRow::new(&xr)
            })
            .collect();
        let acts: Vec<&QuantizedRow> = rows_of_x.iter().collect();
        let m = BlockMatrix::from_bytes(kind, rows, cols, &random_blocks(kind, rows, cols, 2))?;
        let bits = |out: &[[f32; GROUP]]| -> Vec<u32> {
            out.iter().flatten().map(|v| v.to_bits()).collect()
        };
        for g in 0..m.groups() {
            let mut want = vec![[0f32; GROUP]; acts.len()];
            m.dot_group(Kernel::Portable, g, &acts, &mut want);
            for k in &kernels {
                let mut got = vec![[0f32; GROUP]; acts.len()];
                m.dot_group(*k, g, &acts, &mut got);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{kind:?} {cols} cols, group {g}: {k:?}"
                );
                for (r, a) in acts.iter().enumerate() {
                    let mut alone = [[0f32; GROUP]];
                    m.dot_group(*k, g, &[a], &mut alone);
                    assert_eq!(bits(&alone), bits(&got[r..r + 1]), "row {r} alone, {k:?}");
                }
                // Two groups at once: each group's bits, for every number of rows.
                if g + 1 < m.groups() {
                    let mut next = vec![[0f32; GROUP]; acts.len()];
                    m.dot_group(*k, g + 1, &acts, &mut next);
                    for n in 1..=acts.len() {
                        let mut pair = [vec![[0f32; GROUP]; n], vec![[0f32; GROUP]; n]];
                        let [x, y] = &mut pair;
                        m.dot_group_pair(*k, g, &acts[..n], [x, y]);
                        assert_eq!(
                            bits(&pair[0]),
                            bits(&got[..n]),
                            "group {g} of a pair, {k:?}"
                        );
                        assert_eq!(
                            bits(&pair[1]),
                            bits(&next[..n]),
                            "group {} of a pair",
                            g + 1
                        );
                    }
                }
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

#[test]
fn rows_round_to_the_same_bits_with_every_vector_feature() {
    let mut rng = SeededRng::new(11);
    // Random values, a block of zeros, halves that round to even, a reused row of another
    // length.
    let mut x: Vec<f32> = (0..4 * BLOCK)
        .map(|_| (6.0 * rng.f64() - 3.0) as f32)
        .collect();
    x[BLOCK..2 * BLOCK].fill(0.0);
    for (i, v) in x[2 * BLOCK..3 * BLOCK].iter_mut().enumerate() {
        *v = (i as f32 - 16.0) * 0.5;
    }
    x[3 * BLOCK] = 127.0;
    // The code every variant inlines, compiled without vector features.
    let mut portable = QuantizedRow::new(&[]);
    portable.round(&x);
    let mut reused = QuantizedRow::new(&[1.0; 8 * BLOCK]);
    reused.set(&x);
    for (got, name) in [(&QuantizedRow::new(&x), "new"), (&reused, "set again")] {
        assert_eq!(got.q, portable.q, "{name}");
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.d), bits(&portable.d), "{name}");
        assert_eq!(bits(&got.s), bits(&portable.s), "{name}");
        assert_eq!(bits(&got.s8), bits(&portable.s8), "{name}");
    }
    assert!(portable.q[BLOCK..2 * BLOCK].iter().all(|q| *q == 0));
}
