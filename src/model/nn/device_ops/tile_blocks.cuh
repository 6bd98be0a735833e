// What the two forms of the tile products (tile_products.cu for any GPU with bf16 tensor cores,
// tile_products_sm90.cu for Hopper) share: GGUF's block formats, the raw fields a thread loads of
// a block before any arithmetic, the scale and offset of its values, and the asynchronous copies.

#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

enum { Q4_0 = 0, Q4_1 = 1, Q8_0 = 2, Q4_K = 3 };

template <int F> struct Format;
template <> struct Format<Q4_0> { static constexpr int VALUES = 32, BYTES = 18; };
template <> struct Format<Q4_1> { static constexpr int VALUES = 32, BYTES = 20; };
template <> struct Format<Q8_0> { static constexpr int VALUES = 32, BYTES = 34; };
template <> struct Format<Q4_K> { static constexpr int VALUES = 256, BYTES = 144; };

// What one thread reads of W for its values, before any arithmetic (so that the loads overlap a
// stage's products): WORDS words of quant bytes, the block's f16 scale and offset, and for Q4_K
// the three bytes holding its group's 6-bit scale and minimum.
template <int WORDS> struct Raw {
    uint32_t q[WORDS];
    uint16_t d, m;
    uint8_t s0, s1, s2;
    bool valid;
};

__device__ __forceinline__ uint16_t u16_at(const uint8_t* p) {
    return *reinterpret_cast<const uint16_t*>(p);
}

// `r` cleared, and where it is valid its block's scale and offset (and Q4_K's scale bytes of
// group `group` of 32 values of `row`); the block's address, or null where `r` is not valid.
template <int F, int WORDS>
__device__ __forceinline__ const uint8_t* load_header(Raw<WORDS>& r, const uint8_t* w,
                                                      uint32_t row_bytes, uint32_t row,
                                                      uint32_t group, bool valid) {
    r.valid = valid;
    r.d = r.m = 0;
    r.s0 = r.s1 = r.s2 = 0;
#pragma unroll
    for (int i = 0; i < WORDS; ++i) r.q[i] = 0;
    if (!valid) return nullptr;
    constexpr uint32_t groups = Format<F>::VALUES / 32;
    const uint8_t* blk =
        w + size_t(row) * row_bytes + size_t(group / groups) * Format<F>::BYTES;
    r.d = u16_at(blk);
    if (F == Q4_1 || F == Q4_K) r.m = u16_at(blk + 2);
    if (F == Q4_K) {
        const uint32_t s = group % groups;
        const uint8_t* scales = blk + 4;
        r.s0 = scales[s];
        r.s1 = scales[s + 4];
        r.s2 = s >= 4 ? scales[s - 4] : 0;
    }
    return blk;
}

__device__ __forceinline__ float f16_bits(uint16_t bits) {
    return __half2float(__ushort_as_half(bits));
}

// The values of `r` (group `group` of its row) are `q · scale + offset`; zero where not valid.
template <int F, int WORDS>
__device__ __forceinline__ void scale_offset(const Raw<WORDS>& r, uint32_t group, float& scale,
                                             float& offset) {
    scale = offset = 0.f;
    if (!r.valid) return;
    const float d = f16_bits(r.d);
    if (F == Q4_0) {
        scale = d;
        offset = -8.f * d;
    } else if (F == Q4_1) {
        scale = d;
        offset = f16_bits(r.m);
    } else if (F == Q8_0) {
        scale = d;
    } else {
        const uint32_t s = group % 8;
        uint32_t sc, mn;
        if (s < 4) {
            sc = r.s0 & 63;
            mn = r.s1 & 63;
        } else {
            sc = (r.s1 & 0xF) | ((r.s2 >> 6) << 4);
            mn = (r.s1 >> 4) | ((r.s0 >> 6) << 4);
        }
        scale = d * float(sc);
        offset = -f16_bits(r.m) * float(mn);
    }
}

// 16 bytes from global memory to the shared address `shared`, zeros where not `valid`.
__device__ __forceinline__ void copy_async16(uint32_t shared, const void* global, bool valid) {
    const int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared), "l"(global),
                 "r"(bytes));
}

__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

__device__ __forceinline__ uint32_t shared_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// The kernels PREFIX_<format>_t (out = A · Wᵀ) and PREFIX_<format>_n (out = A · W) of every
// format, each calling BODY<format, transposed>; BOUNDS is the kernels' launch bounds.
#define TILE_KERNEL_PAIR(PREFIX, NAME, F, BODY, BOUNDS)                                           \
    extern "C" __global__ void BOUNDS PREFIX##_##NAME##_t(const bf16* a, const uint8_t* w,        \
                                                          bf16* out, uint32_t m, uint32_t rows,   \
                                                          uint32_t cols, uint32_t row_bytes) {    \
        BODY<F, true>(a, w, out, m, rows, cols, row_bytes);                                       \
    }                                                                                             \
    extern "C" __global__ void BOUNDS PREFIX##_##NAME##_n(const bf16* a, const uint8_t* w,        \
                                                          bf16* out, uint32_t m, uint32_t rows,   \
                                                          uint32_t cols, uint32_t row_bytes) {    \
        BODY<F, false>(a, w, out, m, rows, cols, row_bytes);                                      \
    }
#define TILE_KERNELS_OF_EVERY_FORMAT(PREFIX, BODY, BOUNDS)                                        \
    TILE_KERNEL_PAIR(PREFIX, q4_0, Q4_0, BODY, BOUNDS)                                            \
    TILE_KERNEL_PAIR(PREFIX, q4_1, Q4_1, BODY, BOUNDS)                                            \
    TILE_KERNEL_PAIR(PREFIX, q8_0, Q8_0, BODY, BOUNDS)                                            \
    TILE_KERNEL_PAIR(PREFIX, q4_k, Q4_K, BODY, BOUNDS)
