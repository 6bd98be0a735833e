//! Matrix products straight on slices, for the training path's fused CPU ops: the `gemm` crate
//! that candle multiplies with, minus candle's copies into and out of tensors, and with the
//! option to add a product onto a result already there.

use candle_core::Result;

/// A `rows × cols` matrix read from a slice through a row and a column stride. Built row-major
/// by [`Mat::new`]; [`Mat::t`] is its transpose, a view that moves nothing.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// Row-major `rows × cols`; the slice must hold exactly that many values.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        if data.len() != rows * cols {
            candle_core::bail!("matrix of {rows} x {cols} over {} values", data.len());
        }
        Ok(Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        })
    }

    pub fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `out = alpha · lhs · rhs`, or `out += alpha · lhs · rhs` when `accumulate`; `out` is
/// row-major `lhs.rows × rhs.cols`.
pub fn product_into(
    out: &mut [f32],
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    alpha: f32,
) -> Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k || out.len() != m * n {
        candle_core::bail!(
            "product of {m} x {k} and {} x {n} into {} values",
            rhs.rows,
            out.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return Ok(());
    }
    // SAFETY: every matrix is a view built by `Mat::new` (and transposes of one) over a slice
    // of exactly rows × cols values, so each index gemm reads, `(i, j) ↦ i · row_stride +
    // j · col_stride` for i < rows and j < cols, lies inside its slice; `out` holds m × n
    // values written row-major; the output does not alias the inputs (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        );
    }
    Ok(())
}

/// `alpha · lhs · rhs`, row-major `lhs.rows × rhs.cols`.
pub fn product(lhs: Mat, rhs: Mat, alpha: f32) -> Result<Vec<f32>> {
    let mut out = vec![0f32; lhs.rows * rhs.cols];
    product_into(&mut out, false, lhs, rhs, alpha)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook triple loop.
    fn naive(a: &[f32], (m, k): (usize, usize), b: &[f32], n: usize) -> Vec<f32> {
        (0..m)
            .flat_map(|i| (0..n).map(move |j| (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum()))
            .collect()
    }

    fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols)
            .flat_map(|j| (0..rows).map(move |i| a[i * cols + j]))
            .collect()
    }

    #[test]
    fn products_of_views_and_transposes_match_the_triple_loop() -> Result<()> {
        let (m, k, n) = (37, 19, 23);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 * 0.25).collect();
        let want = naive(&a, (m, k), &b, n);
        let close = |got: &[f32], want: &[f32], scale: f32| {
            got.iter()
                .zip(want)
                .all(|(g, w)| (g - scale * w).abs() <= 1e-4 * (1.0 + w.abs()))
        };
        let got = product(Mat::new(&a, m, k)?, Mat::new(&b, k, n)?, 1.0)?;
        assert!(close(&got, &want, 1.0));
        // The same product from stored transposes, read through `t()`.
        let (at, bt) = (transpose(&a, m, k), transpose(&b, k, n));
        let got = product(Mat::new(&at, k, m)?.t(), Mat::new(&bt, n, k)?.t(), 0.5)?;
        assert!(close(&got, &want, 0.5));
        // Accumulating adds onto what is there.
        let mut acc = want.clone();
        product_into(
            &mut acc,
            true,
            Mat::new(&a, m, k)?,
            Mat::new(&b, k, n)?,
            2.0,
        )?;
        assert!(close(&acc, &want, 3.0));
        assert!(product(Mat::new(&a, m, k)?, Mat::new(&a, m, k)?, 1.0).is_err());
        assert!(Mat::new(&a, m, k + 1).is_err());
        Ok(())
    }
}
