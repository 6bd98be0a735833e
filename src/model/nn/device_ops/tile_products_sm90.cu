// Hopper's (sm_90a) form of tile_products.cu's products: the same two products of a bf16 input
// with a frozen weight kept in GGUF blocks, the weight dequantized one tile at a time into shared
// memory inside the product, multiplied by the warpgroup tensor-core instruction (wgmma).
//
//   wgmma_<fmt>_t: out [m, rows] = A · Wᵀ   (reduce = cols; the forward product)
//   wgmma_<fmt>_n: out [m, cols] = A · W    (reduce = rows; the input's gradient)
//
// A block of 256 threads (two warpgroups) computes a 128 × 128 tile of the output, 64 reduction
// steps a stage; each warpgroup multiplies its 64 rows by the whole 128 columns (m64n128k16, f32
// accumulators). The instruction reads both operands from shared memory in its 128-byte swizzled
// layout, asynchronously: while the tensor cores work on one stage, the threads copy A's tile two
// stages ahead (cp.async, three stages of A) and dequantize W's next tile (two stages of W) from
// the raw blocks they loaded one stage earlier. Each thread dequantizes one group of 32 values a
// stage. `reduce` must be a multiple of 32 and A's rows 16-byte aligned; the block needs
// SHARED_BYTES of dynamic shared memory.

#include "tile_blocks.cuh"

#define TILE 128
#define STEP 64
#define THREADS 256
#define A_STAGES 3
#define W_STAGES 2
// One operand tile: 128 rows of 64 bf16 values (128 bytes), or W's 64 rows of 128 values for the
// gradient stored as two 64-column halves.
#define TILE_BYTES (TILE * STEP * 2)
#define HALF_BYTES (TILE_BYTES / 2)
// The stages, and 1 KB to align them to the swizzle's 1,024-byte pattern.
#define SHARED_BYTES ((A_STAGES + W_STAGES) * TILE_BYTES + 1024)

__device__ __forceinline__ uint32_t u32_at_aligned2(const uint8_t* p) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
    return uint32_t(h[0]) | (uint32_t(h[1]) << 16);
}

// The raw data of group `group` (32 values) of W's row `row`: the 4-bit formats' 16 bytes (two
// values a byte) in q[0..4], Q8_0's and Q4_K's group's 32 bytes in q[0..8].
template <int F>
__device__ __forceinline__ Raw<8> load_raw(const uint8_t* w, uint32_t row_bytes, uint32_t row,
                                           uint32_t group, bool valid) {
    Raw<8> r;
    const uint8_t* blk = load_header<F>(r, w, row_bytes, row, group, valid);
    if (!valid) return r;
    if (F == Q4_0) {
#pragma unroll
        for (int i = 0; i < 4; ++i) r.q[i] = u32_at_aligned2(blk + 2 + 4 * i);
    } else if (F == Q4_1) {
        const uint32_t* q = reinterpret_cast<const uint32_t*>(blk + 4); // 20-byte blocks
#pragma unroll
        for (int i = 0; i < 4; ++i) r.q[i] = q[i];
    } else if (F == Q8_0) {
#pragma unroll
        for (int i = 0; i < 8; ++i) r.q[i] = u32_at_aligned2(blk + 2 + 4 * i);
    } else {
        const uint4* q = reinterpret_cast<const uint4*>(blk + 16 + 32 * (group % 8 / 2));
        const uint4 lo = q[0], hi = q[1];
        r.q[0] = lo.x;
        r.q[1] = lo.y;
        r.q[2] = lo.z;
        r.q[3] = lo.w;
        r.q[4] = hi.x;
        r.q[5] = hi.y;
        r.q[6] = hi.z;
        r.q[7] = hi.w;
    }
    return r;
}

// An integer below 2^23 as f32 without a conversion instruction: its bits under 2^23's exponent.
__device__ __forceinline__ float small_int(uint32_t x) {
    return __int_as_float(0x4B000000 | x) - 8388608.f;
}

// Eight values `q · scale + offset` as bf16, the quants being the bytes of `lo` and `hi` (4-bit
// formats: the nibble at `shift`; Q8_0: the signed byte).
template <int F>
__device__ __forceinline__ uint4 eight(uint32_t lo, uint32_t hi, uint32_t shift, float scale,
                                       float offset) {
    float v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const uint32_t word = i < 4 ? lo : hi, byte = (word >> (8 * (i % 4))) & 0xFF;
        const float q = F == Q8_0 ? small_int(byte ^ 0x80) - 128.f : small_int((byte >> shift) & 0xF);
        v[i] = fmaf(q, scale, offset);
    }
    uint4 out;
    uint32_t* o = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const __nv_bfloat162 pair = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
        o[i] = *reinterpret_cast<const uint32_t*>(&pair);
    }
    return out;
}

__device__ __forceinline__ void store_shared16(uint32_t addr, uint4 v) {
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(v.x), "r"(v.y),
                 "r"(v.z), "r"(v.w));
}

// A swizzled tile's byte offset of the 16-byte piece `piece` (0–7) of its 128-byte row `row`: the
// piece's index is XORed with the row's index within its 8-row (1,024-byte) pattern.
__device__ __forceinline__ uint32_t swizzled(uint32_t row, uint32_t piece) {
    return row * 128 + ((piece ^ (row & 7)) << 4);
}

// The 32 values of `r` (group `group` of its row) stored as four 16-byte pieces: piece j holds
// values [8j, 8j + 8) at shared address `at(j)`.
template <int F, typename At>
__device__ __forceinline__ void store_group(const Raw<8>& r, uint32_t group, At at) {
    float scale, offset;
    scale_offset<F>(r, group, scale, offset);
    const uint32_t nibble = F == Q4_K ? 4 * (group % 2) : 0;
#pragma unroll
    for (uint32_t j = 0; j < 4; ++j) {
        uint4 v;
        if (F == Q4_0 || F == Q4_1) // byte i holds value i (low nibble) and value i + 16
            v = eight<F>(r.q[2 * (j & 1)], r.q[2 * (j & 1) + 1], 4 * (j >> 1), scale, offset);
        else
            v = eight<F>(r.q[2 * j], r.q[2 * j + 1], nibble, scale, offset);
        store_shared16(at(j), v);
    }
}

// Where a thread's group of W's tile comes from and where it goes. The forward's tile is W's rows
// [col0, col0 + 128) at the stage's two groups, two threads a row, stored reduction-major (a row
// of the tile per row of W); the gradient's is W's rows [red0, red0 + 64) at four groups from
// column col0, four threads a row, stored column-major for the instruction's transposed operand:
// each half of 64 columns is 64 swizzled rows of 128 bytes, one per row of W.
template <bool T> struct Slot {
    uint32_t row, group, tile_row, first_piece, half;
    bool valid;
    __device__ __forceinline__ Slot(uint32_t tid, uint32_t red0, uint32_t col0, uint32_t rows,
                                    uint32_t cols) {
        if (T) {
            const uint32_t g = tid & 1;
            tile_row = tid >> 1;
            row = col0 + tile_row;
            group = red0 / 32 + g;
            valid = row < rows && group * 32 < cols;
            first_piece = 4 * g;
            half = 0;
        } else {
            const uint32_t g = tid & 3;
            tile_row = tid >> 2;
            row = red0 + tile_row;
            group = col0 / 32 + g;
            valid = row < rows && group * 32 < cols;
            first_piece = 4 * (g & 1);
            half = g >> 1;
        }
    }
    __device__ __forceinline__ uint32_t at(uint32_t tile, uint32_t j) const {
        return tile + half * HALF_BYTES + swizzled(tile_row, first_piece + j);
    }
};

// Waits for every group of copies but the last one committed.
__device__ __forceinline__ void copy_async_wait_but_last() {
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

// A's tile [row0, row0 + 128) × [red0, red0 + 64) into the swizzled tile at `tile`, rows past `m`
// and columns past `reduce` zero: eight 16-byte pieces a row, four per thread.
__device__ __forceinline__ void load_a(uint32_t tile, const bf16* a, uint32_t m, uint32_t reduce,
                                       uint32_t row0, uint32_t red0, uint32_t tid) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const uint32_t piece = tid + THREADS * i, r = piece >> 3, part = piece & 7;
        const bool valid = row0 + r < m && red0 + 8 * part < reduce;
        const bf16* src = valid ? a + size_t(row0 + r) * reduce + red0 + 8 * part : a;
        copy_async16(tile + swizzled(r, part), src, valid);
    }
}

// The instruction's description of an operand in shared memory: its address, the byte distance
// between its 64-column halves (the transposed operand; unused by a reduction-major one, 16 by
// convention), between its 8-row groups (1,024), and the 128-byte swizzle.
__device__ __forceinline__ uint64_t describe(uint32_t addr, uint32_t halves) {
    return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t((halves & 0x3FFFF) >> 4) << 16) |
           (uint64_t(1024 >> 4) << 32) | (1ull << 62);
}

// d += A (64 × 16) · B (16 × 128), both from shared memory; B reduction-major (TRANS = 0) or
// column-major (TRANS = 1).
template <int TRANS>
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t a, uint64_t b) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, "
        "%8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, "
        "%40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, "
        "%56, %57, %58, %59, %60, %61, %62, %63}, "
        "%64, %65, p, 1, 1, 0, %67;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
          "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
          "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
          "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),
          "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]),
          "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),
          "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),
          "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]),
          "+f"(d[62]), "+f"(d[63])
        : "l"(a), "l"(b), "r"(1), "n"(TRANS));
}

__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Makes this thread's shared-memory writes visible to the tensor cores' asynchronous reads.
__device__ __forceinline__ void fence_for_tensor_cores() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

template <int F, bool T>
__device__ void wgmma_product(const bf16* __restrict__ a, const uint8_t* __restrict__ w,
                              bf16* __restrict__ out, uint32_t m, uint32_t rows, uint32_t cols,
                              uint32_t row_bytes) {
    extern __shared__ uint8_t shared[];
    const uint32_t base =
        (shared_address(shared) + 1023) & ~uint32_t(1023);
    const uint32_t a_tiles = base, w_tiles = base + A_STAGES * TILE_BYTES;
    const uint32_t reduce = T ? cols : rows, width = T ? rows : cols;
    const uint32_t tid = threadIdx.x, group_of_warps = tid / 128;
    const uint32_t row0 = blockIdx.y * TILE, col0 = blockIdx.x * TILE;
    const uint32_t steps = (reduce + STEP - 1) / STEP;

    load_a(a_tiles, a, m, reduce, row0, 0, tid);
    copy_async_commit();
    if (steps > 1) load_a(a_tiles + TILE_BYTES, a, m, reduce, row0, STEP, tid);
    copy_async_commit();
    {
        const Slot<T> slot(tid, 0, col0, rows, cols);
        const Raw<8> raw = load_raw<F>(w, row_bytes, slot.row, slot.group, slot.valid);
        store_group<F>(raw, slot.group, [&](uint32_t j) { return slot.at(w_tiles, j); });
    }
    Slot<T> next(tid, STEP, col0, rows, cols);
    Raw<8> raw = load_raw<F>(w, row_bytes, next.row, next.group, next.valid && steps > 1);
    copy_async_wait_but_last();
    fence_for_tensor_cores();
    __syncthreads();

    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = 0.f;

    for (uint32_t t = 0; t < steps; ++t) {
        const uint32_t a_tile = a_tiles + (t % A_STAGES) * TILE_BYTES + group_of_warps * (64 * 128);
        const uint32_t w_tile = w_tiles + (t % W_STAGES) * TILE_BYTES;
        wgmma_fence();
#pragma unroll
        for (uint32_t k = 0; k < STEP / 16; ++k) {
            // 16 reduction steps are 32 bytes along a swizzled row, or 16 rows of the transposed
            // operand.
            const uint64_t da = describe(a_tile + 32 * k, 16);
            if (T)
                wgmma_m64n128k16<0>(acc, da, describe(w_tile + 32 * k, 16));
            else
                wgmma_m64n128k16<1>(acc, da, describe(w_tile + 16 * 128 * k, HALF_BYTES));
        }
        wgmma_commit();
        if (t + 2 < steps)
            load_a(a_tiles + ((t + 2) % A_STAGES) * TILE_BYTES, a, m, reduce, row0, (t + 2) * STEP,
                   tid);
        copy_async_commit();
        if (t + 1 < steps) {
            const uint32_t tile = w_tiles + ((t + 1) % W_STAGES) * TILE_BYTES;
            store_group<F>(raw, next.group, [&](uint32_t j) { return next.at(tile, j); });
            next = Slot<T>(tid, (t + 2) * STEP, col0, rows, cols);
            raw = load_raw<F>(w, row_bytes, next.row, next.group, next.valid && t + 2 < steps);
        }
        wgmma_wait();
        copy_async_wait_but_last();
        fence_for_tensor_cores();
        __syncthreads();
    }

    // The accumulators of a warp of the warpgroup: rows 16·warp + lane/4 and 8 more, columns
    // 8j + 2·(lane % 4) and the next, for j < 16; the width is a multiple of 32, so a pair is
    // inside it whenever its first column is.
    const uint32_t warp = (tid / 32) % 4, lane = tid % 32;
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const uint32_t gr = row0 + group_of_warps * 64 + warp * 16 + lane / 4 + 8 * half;
            const uint32_t gc = col0 + 8 * j + 2 * (lane % 4);
            if (gr < m && gc < width)
                *reinterpret_cast<__nv_bfloat162*>(out + size_t(gr) * width + gc) =
                    __floats2bfloat162_rn(acc[4 * j + 2 * half], acc[4 * j + 2 * half + 1]);
        }
}

// Two blocks an SM: at most 128 registers a thread.
#define WARPGROUP_BOUNDS __launch_bounds__(THREADS, 2)
TILE_KERNELS_OF_EVERY_FORMAT(wgmma, wgmma_product, WARPGROUP_BOUNDS)
