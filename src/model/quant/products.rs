//! The products over block weights: the kernel this CPU runs, one weight or several in one
//! parallel region, and the candle op that decoding and short prompts use.

use super::kernels::portable;
#[cfg(target_arch = "x86_64")]
use super::kernels::x86 as simd;
use super::{BlockKind, BlockMatrix, GROUP, QuantizedRow};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, bail};
use rayon::prelude::*;

impl BlockMatrix {
    /// `y = x W^T` for `x` of `n` rows (`[n, cols]`, row-major); `y` is `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        matmul_many(&[self], x, n).pop().unwrap_or_default()
    }

    /// `out[r][l] = a[r] · row(GROUP g + l)` for the rows of group `g` (padding rows give 0) and
    /// each activation row: the group's values are read once for up to four activation rows.
    /// A row's result has the same bits whichever rows are beside it.
    pub(crate) fn dot_group(
        &self,
        kernel: Kernel,
        g: usize,
        a: &[&QuantizedRow],
        out: &mut [[f32; GROUP]],
    ) {
        let w = self.group(g);
        for (a, out) in a.chunks(ROWS_AT_ONCE).zip(out.chunks_mut(ROWS_AT_ONCE)) {
            match a.len() {
                4 => out.copy_from_slice(&self.dot_rows::<4>(kernel, &w, a)),
                3 => out.copy_from_slice(&self.dot_rows::<3>(kernel, &w, a)),
                2 => out.copy_from_slice(&self.dot_rows::<2>(kernel, &w, a)),
                _ => out.copy_from_slice(&self.dot_rows::<1>(kernel, &w, a)),
            }
        }
    }

    /// [`Self::dot_group`] for groups `g` and `g + 1`, into `out[0]` and `out[1]`: with the
    /// 512-bit kernels both groups' rows take one register, so each activation is broadcast
    /// once for sixteen rows. The same bits as two calls of [`Self::dot_group`].
    pub(crate) fn dot_group_pair(
        &self,
        kernel: Kernel,
        g: usize,
        a: &[&QuantizedRow],
        out: [&mut [[f32; GROUP]]; 2],
    ) {
        let [first, second] = out;
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Vnni {
            let w = [self.group(g), self.group(g + 1)];
            for (i, a) in a.chunks(ROWS_AT_ONCE).enumerate() {
                let rows = i * ROWS_AT_ONCE..i * ROWS_AT_ONCE + a.len();
                let (x, y) = (&mut first[rows.clone()], &mut second[rows]);
                match a.len() {
                    4 => self.dot_rows_pair::<4>(&w, a, x, y),
                    3 => self.dot_rows_pair::<3>(&w, a, x, y),
                    2 => self.dot_rows_pair::<2>(&w, a, x, y),
                    _ => self.dot_rows_pair::<1>(&w, a, x, y),
                }
            }
            return;
        }
        self.dot_group(kernel, g, a, first);
        self.dot_group(kernel, g + 1, a, second);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn dot_rows_pair<const R: usize>(
        &self,
        w: &[super::Group; 2],
        a: &[&QuantizedRow],
        first: &mut [[f32; GROUP]],
        second: &mut [[f32; GROUP]],
    ) {
        let a: &[&QuantizedRow; R] = a.try_into().expect("R activation rows");
        let offsets = self.offsets(a);
        // SAFETY: the kernel's features were detected at run time (`Kernel::Vnni`); both
        // groups are of this matrix and the activations have its number of blocks.
        let [x, y] = unsafe {
            match self.kind {
                BlockKind::Q8_0 => simd::dot_q8_vnni_pair(w.each_ref(), a),
                BlockKind::Q4_0 | BlockKind::Q4_1 => {
                    simd::dot_q4_vnni_pair(w.each_ref(), a, offsets)
                }
            }
        };
        first.copy_from_slice(&x);
        second.copy_from_slice(&y);
    }

    /// Each row's per-block sums that the 4-bit kinds' offsets multiply.
    fn offsets<'a, const R: usize>(&self, a: &[&'a QuantizedRow; R]) -> [&'a [f32]; R] {
        std::array::from_fn(|r| match self.kind {
            BlockKind::Q4_0 => a[r].s8.as_slice(),
            BlockKind::Q4_1 | BlockKind::Q8_0 => a[r].s.as_slice(),
        })
    }

    #[inline]
    fn dot_rows<const R: usize>(
        &self,
        kernel: Kernel,
        w: &super::Group,
        a: &[&QuantizedRow],
    ) -> [[f32; GROUP]; R] {
        let a: &[&QuantizedRow; R] = a.try_into().expect("R activation rows");
        let offsets = self.offsets(a);
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the kernel's features were detected at run time (`Kernel::detect`); the
            // group and the activations have the same number of blocks.
            Kernel::Vnni => unsafe {
                match self.kind {
                    BlockKind::Q8_0 => simd::dot_q8_vnni(w, a),
                    BlockKind::Q4_0 | BlockKind::Q4_1 => simd::dot_q4_vnni(w, a, offsets),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe {
                match self.kind {
                    BlockKind::Q8_0 => simd::dot_q8_avx2(w, a),
                    BlockKind::Q4_0 | BlockKind::Q4_1 => simd::dot_q4_avx2(w, a, offsets),
                }
            },
            Kernel::Portable => std::array::from_fn(|r| portable::dot(w, a[r], offsets[r])),
        }
    }
}

/// Activation rows a kernel call takes: each adds two chains of integer sums and two of floats
/// in registers.
const ROWS_AT_ONCE: usize = 4;

/// The dot-product code this CPU runs, detected once per product rather than once per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Kernel {
    pub(crate) fn detect() -> Kernel {
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
    let acts: Vec<&QuantizedRow> = acts.iter().collect();
    tasks.into_par_iter().for_each(|(w, first, chunk)| {
        let mut y = vec![[0f32; GROUP]; n];
        for (i, out) in chunk.chunks_exact_mut(GROUP * n).enumerate() {
            w.dot_group(kernel, first + i, &acts, &mut y);
            for (j, y) in y.iter().enumerate() {
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
