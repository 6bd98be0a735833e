//! The decoder's kernel launches, one method a kernel: its grid, block and arguments.

use super::*;

impl GpuDecoder<'_> {
    pub(super) fn launch<'a>(&'a self, f: &'a CudaFunction) -> LaunchArgs<'a> {
        self.stream.launch_builder(f)
    }

    /// `y (+)= x W^T + bias`, then the adapter's `scale · (x A^T) B^T`.
    pub(super) fn project(&self, l: &Projection, x: u64, y: u64, accumulate: bool) -> Result<()> {
        let bias = l
            .bias
            .as_ref()
            .map(|b| device_pointer(b, "decode"))
            .transpose()?;
        self.product(
            &Product {
                w: l.w,
                x,
                y,
                out: l.out,
                inp: l.inp,
                alpha: 1.0,
                accumulate,
                bias,
            },
            false,
        )?;
        if let Some(a) = &l.lora {
            let low = device_pointer(&self.buffers.low, "decode")?;
            self.product(
                &Product {
                    w: device_pointer(&a.a, "decode")?,
                    x,
                    y: low,
                    out: a.rank,
                    inp: l.inp,
                    alpha: a.scale,
                    accumulate: false,
                    bias: None,
                },
                false,
            )?;
            self.product(
                &Product {
                    w: device_pointer(&a.b, "decode")?,
                    x: low,
                    y,
                    out: l.out,
                    inp: a.rank,
                    alpha: 1.0,
                    accumulate: true,
                    bias: None,
                },
                false,
            )?;
        }
        Ok(())
    }

    /// `y [rows, out] = alpha · x [rows, in] · W [out, in]^T (+ bias) (+ y)`, row-major, f32
    /// arithmetic; `y` f32 when `logits`, else of the model's dtype. Up to MATVEC_MAX_ROWS rows
    /// one launch of the decoder's kernel (a decode step is bound by launches, and cuBLAS's
    /// heuristics cost more than such a product), above it cuBLAS and the bias kernel.
    pub(super) fn product(&self, g: &Product, logits: bool) -> Result<()> {
        if self.rows <= MATVEC_MAX_ROWS {
            let f = if logits {
                &self.kernels.matvec_logits
            } else {
                &self.kernels.matvec
            };
            let (out, inp, rows) = (count(g.out)?, count(g.inp)?, count(self.rows)?);
            let (bias, accumulate) = (g.bias.unwrap_or(0), u32::from(g.accumulate));
            let mut builder = self.launch(f);
            builder.arg(&g.w).arg(&g.x).arg(&g.y).arg(&bias);
            builder
                .arg(&out)
                .arg(&inp)
                .arg(&rows)
                .arg(&g.alpha)
                .arg(&accumulate);
            let cfg = LaunchConfig {
                grid_dim: (out.div_ceil(MATVEC_WARPS), 1, 1),
                block_dim: (32 * MATVEC_WARPS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: W holds out · in elements, x rows · in, y rows · out and the bias out.
            unsafe { builder.launch(cfg) }.w()?;
            return Ok(());
        }
        let blas = self.dev.cublas_handle();
        let (m, n, k) = (int(g.out)?, int(self.rows)?, int(g.inp)?);
        let (alpha, beta) = (g.alpha, if g.accumulate { 1f32 } else { 0f32 });
        let y_type = if logits {
            blas::cudaDataType::CUDA_R_32F
        } else {
            self.data_type
        };
        // cuBLAS is column-major: y^T [out, rows] = W [out, in] · x^T [in, rows].
        // SAFETY: as above; alpha and beta outlive the call, which only queues the product.
        unsafe {
            cublas::gemm_ex(
                *blas.handle(),
                blas::cublasOperation_t::CUBLAS_OP_T,
                blas::cublasOperation_t::CUBLAS_OP_N,
                m,
                n,
                k,
                (&alpha as *const f32).cast(),
                g.w as *const _,
                self.data_type,
                k,
                g.x as *const _,
                self.data_type,
                k,
                (&beta as *const f32).cast(),
                g.y as *mut _,
                y_type,
                m,
                blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .w()?;
        if let Some(bias) = g.bias {
            let (n, total) = (count(g.out)?, count(g.out * self.rows)?);
            let mut builder = self.launch(&self.kernels.add_bias);
            builder.arg(&g.y).arg(&bias).arg(&n).arg(&total);
            // SAFETY: y holds rows · out elements and the bias out, of the model's dtype.
            unsafe { builder.launch(LaunchConfig::for_num_elems(total)) }.w()?;
        }
        Ok(())
    }

    pub(super) fn rms_norm(&self, x: u64, w: u64, out: u64, h: usize) -> Result<()> {
        let h = count(h)?;
        let mut builder = self.launch(&self.kernels.rms_norm);
        builder.arg(&x).arg(&w).arg(&out).arg(&h).arg(&self.eps);
        let cfg = LaunchConfig {
            grid_dim: (count(self.rows)?, 1, 1),
            block_dim: (NORM_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: x and out hold rows · h elements, w h.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(())
    }

    /// What the rotary and attention kernels take about the heads and the cache: query heads,
    /// key/value heads, head dimension, the position's device address and the capacity.
    fn head_args(&self) -> Result<(u32, u32, u32, u64, u32)> {
        Ok((
            count(self.heads)?,
            count(self.kv_heads)?,
            count(self.head_dim)?,
            device_pointer(&self.buffers.position, "decode")?,
            count(self.capacity)?,
        ))
    }

    pub(super) fn rope_store(&self, q: u64, k: u64, v: u64, kc: u64, vc: u64) -> Result<()> {
        let (heads, kv, d, pos, cap) = self.head_args()?;
        let mut builder = self.launch(&self.kernels.rope_store);
        builder
            .arg(&q)
            .arg(&k)
            .arg(&v)
            .arg(&self.cos)
            .arg(&self.sin);
        builder
            .arg(&kc)
            .arg(&vc)
            .arg(&heads)
            .arg(&kv)
            .arg(&d)
            .arg(&pos)
            .arg(&cap);
        let cfg = LaunchConfig {
            grid_dim: (count(self.rows)?, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the buffers and caches have the shapes the kernel reads, pos < capacity and the
        // RoPE tables cover it (checked in step).
        unsafe { builder.launch(cfg) }.w()?;
        Ok(())
    }

    pub(super) fn attention(&self, q: u64, kc: u64, vc: u64, out: u64) -> Result<()> {
        let (heads, kv, d, pos, cap) = self.head_args()?;
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        let pads = device_pointer(&self.buffers.pads, "decode")?;
        let mut builder = self.launch(&self.kernels.attention);
        builder.arg(&q).arg(&kc).arg(&vc).arg(&pads).arg(&out);
        builder
            .arg(&heads)
            .arg(&kv)
            .arg(&d)
            .arg(&pos)
            .arg(&cap)
            .arg(&scale);
        let cfg = LaunchConfig {
            grid_dim: (heads, count(self.rows)?, 1),
            block_dim: (32 * ATTENTION_WARPS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: as rope_store; head_dim is at most MAX_HEAD_DIM (checked in new).
        unsafe { builder.launch(cfg) }.w()?;
        Ok(())
    }

    pub(super) fn swiglu(&self, gate: u64, up: u64, out: u64) -> Result<()> {
        let n = count(self.rows * self.intermediate)?;
        let mut builder = self.launch(&self.kernels.swiglu);
        builder.arg(&gate).arg(&up).arg(&out).arg(&n);
        // SAFETY: the three buffers hold rows · intermediate elements.
        unsafe { builder.launch(LaunchConfig::for_num_elems(n)) }.w()?;
        Ok(())
    }
}
