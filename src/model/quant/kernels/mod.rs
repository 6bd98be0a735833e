//! The dot products of one group of eight rows with one row of 8-bit activations: portable code
//! and, on x86-64, the AVX2 and AVX-512 VNNI kernels, which give the same bits.

pub(crate) mod portable;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;
