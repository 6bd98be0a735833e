// Products with a frozen weight kept in GGUF blocks on the GPU (QLoRA's base): the weight is
// dequantized one tile at a time into shared memory inside the product, never whole.
//
// W is [rows, cols] in blocks along its rows (Q4_0, Q4_1, Q8_0: 32 values a block; Q4_K: 256 in
// eight groups of 32), row-major blocks as GGUF stores them. A is bf16 [m, reduce], row-major.
//   tile_<fmt>_t: out [m, rows] = A · Wᵀ   (reduce = cols; the forward product)
//   tile_<fmt>_n: out [m, cols] = A · W    (reduce = rows; the input's gradient)
// A block of 256 threads computes a 128 × 128 tile of the output with bf16 tensor-core products
// (ldmatrix and mma.sync) accumulating in f32, 32 reduction steps at a time, two stages deep: while the tensor cores work
// on one stage, A's next tile is copied asynchronously and W's next raw blocks are loaded into
// registers, then dequantized into the other stage. Each thread dequantizes 16 values of one
// group of 32 per stage. `reduce` must be a multiple of 32 and A's rows 16-byte aligned.

#include "tile_blocks.cuh"

#define TILE_M 128
#define TILE_N 128
#define STEP 32
#define THREADS 256
// Row strides of the shared tiles, padded by 8 values against bank conflicts.
#define LD_A (STEP + 8)
#define LD_BT (STEP + 8)   // the forward's W tile: [TILE_N][LD_BT], W's rows
#define LD_BN (TILE_N + 8) // the gradient's W tile: [STEP][LD_BN], W's rows of the reduction
#define B_TILE (TILE_N * LD_BT)

// 16 bytes at `p`, 2-byte aligned.
__device__ __forceinline__ void load16_aligned2(const uint8_t* p, uint32_t q[4]) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i] = uint32_t(h[2 * i]) | (uint32_t(h[2 * i + 1]) << 16);
}

// The raw data for values [16 half, 16 half + 16) of group `group` (32 values) of `row`.
template <int F>
__device__ __forceinline__ Raw<4> load_raw(const uint8_t* w, uint32_t row_bytes, uint32_t row,
                                           uint32_t group, uint32_t half, bool valid) {
    Raw<4> r;
    const uint8_t* blk = load_header<F>(r, w, row_bytes, row, group, valid);
    if (!valid) return r;
    if (F == Q4_0) {
        load16_aligned2(blk + 2, r.q);
    } else if (F == Q4_1) {
        const uint32_t* q = reinterpret_cast<const uint32_t*>(blk + 4); // 20-byte blocks
#pragma unroll
        for (int i = 0; i < 4; ++i) r.q[i] = q[i];
    } else if (F == Q8_0) {
        load16_aligned2(blk + 2 + 16 * half, r.q);
    } else {
        const uint32_t s = group % 8;
        const uint4 v = *reinterpret_cast<const uint4*>(blk + 16 + 32 * (s / 2) + 16 * half);
        r.q[0] = v.x;
        r.q[1] = v.y;
        r.q[2] = v.z;
        r.q[3] = v.w;
    }
    return r;
}

// The 16 values of `r` (group `group`, half `half`) as bf16, stored at `dst` (16-byte aligned).
template <int F>
__device__ __forceinline__ void store_values(const Raw<4>& r, uint32_t group, uint32_t half,
                                             bf16* dst) {
    float scale, offset;
    scale_offset<F>(r, group, scale, offset);
    const uint32_t shift = F == Q4_K ? 4 * (group % 2) : 4 * half;
    __align__(16) bf16 v[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) {
        const uint32_t byte = (r.q[i / 4] >> (8 * (i % 4))) & 0xFF;
        const float q = F == Q8_0 ? float(int8_t(byte)) : float((byte >> shift) & 0xF);
        v[i] = __float2bfloat16(q * scale + offset);
    }
    uint4* out = reinterpret_cast<uint4*>(dst);
    out[0] = reinterpret_cast<const uint4*>(v)[0];
    out[1] = reinterpret_cast<const uint4*>(v)[1];
}

// Where a thread's 16 values of W's tile come from (row, group of 32, half) and whether they
// exist. The forward's tile is W's rows [col0, col0 + 128) at one group, two threads a row; the
// gradient's is W's rows [red0, red0 + 32) at four groups from column col0, eight threads a row.
template <bool T> struct Slot {
    uint32_t row, group, half, offset;
    bool valid;
    __device__ __forceinline__ Slot(uint32_t tid, uint32_t red0, uint32_t col0, uint32_t rows,
                                    uint32_t cols) {
        half = tid & 1;
        if (T) {
            const uint32_t n = tid >> 1;
            row = col0 + n;
            group = red0 / 32;
            valid = row < rows;
            offset = n * LD_BT + 16 * half;
        } else {
            const uint32_t r = tid >> 3, g = (tid >> 1) & 3;
            row = red0 + r;
            group = col0 / 32 + g;
            valid = group * 32 < cols;
            offset = r * LD_BN + 32 * g + 16 * half;
        }
    }
};

__device__ __forceinline__ void copy_async_wait() {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// A's tile [row0, row0 + 128) × [red0, red0 + 32) into `dst`, rows past `m` zero: four 16-byte
// pieces a row, two per thread.
__device__ __forceinline__ void load_a(bf16* dst, const bf16* a, uint32_t m, uint32_t reduce,
                                       uint32_t row0, uint32_t red0, uint32_t tid) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const uint32_t piece = tid + THREADS * i, r = piece >> 2, part = piece & 3;
        const bool valid = row0 + r < m;
        const bf16* src = valid ? a + size_t(row0 + r) * reduce + red0 + 8 * part : a;
        copy_async16(shared_address(dst + r * LD_A + 8 * part), src, valid);
    }
}

// The tensor cores' operands: four 8 × 8 bf16 matrices from shared memory (each lane giving
// one row's address, 16-byte aligned), transposed or not, and the 16 × 8 × 16 product
// accumulating in f32. Fragment layouts as PTX's mma.m16n8k16 defines them.
__device__ __forceinline__ void load_matrices(uint32_t r[4], const bf16* p) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

__device__ __forceinline__ void load_matrices_transposed(uint32_t r[4], const bf16* p) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

__device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <int F, bool T>
__device__ void tile_product(const bf16* __restrict__ a, const uint8_t* __restrict__ w,
                             bf16* __restrict__ out, uint32_t m, uint32_t rows, uint32_t cols,
                             uint32_t row_bytes) {
    __shared__ __align__(128) bf16 sa[2][TILE_M * LD_A];
    __shared__ __align__(128) bf16 sb[2][B_TILE];
    const uint32_t reduce = T ? cols : rows, width = T ? rows : cols;
    const uint32_t tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const uint32_t row0 = blockIdx.y * TILE_M, col0 = blockIdx.x * TILE_N;
    const uint32_t wm = warp / 4, wn = warp % 4; // a warp's 64 × 32 of the tile
    const uint32_t steps = reduce / STEP;

    load_a(sa[0], a, m, reduce, row0, 0, tid);
    copy_async_commit();
    {
        const Slot<T> slot(tid, 0, col0, rows, cols);
        const Raw<4> raw = load_raw<F>(w, row_bytes, slot.row, slot.group, slot.half, slot.valid);
        store_values<F>(raw, slot.group, slot.half, sb[0] + slot.offset);
    }
    copy_async_wait();
    __syncthreads();

    // acc[i][j]: rows wm·64 + 16i, columns wn·32 + 8j of the tile.
    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

    for (uint32_t t = 0; t < steps; ++t) {
        const uint32_t cur = t & 1, nxt = cur ^ 1;
        const bool more = t + 1 < steps;
        const Slot<T> slot(tid, (t + 1) * STEP, col0, rows, cols);
        Raw<4> raw;
        if (more) {
            load_a(sa[nxt], a, m, reduce, row0, (t + 1) * STEP, tid);
            copy_async_commit();
            raw = load_raw<F>(w, row_bytes, slot.row, slot.group, slot.half, slot.valid);
        }
#pragma unroll
        for (uint32_t kk = 0; kk < STEP; kk += 16) {
            uint32_t fa[4][4], fb[4][2];
#pragma unroll
            for (int i = 0; i < 4; ++i)
                load_matrices(fa[i], sa[cur] + (wm * 64 + i * 16 + (lane & 15)) * LD_A + kk +
                                         (lane >> 4) * 8);
#pragma unroll
            for (int jj = 0; jj < 2; ++jj) {
                uint32_t r[4];
                if (T)
                    load_matrices(r, sb[cur] +
                                         (wn * 32 + jj * 16 + (lane & 7) + ((lane >> 4) << 3)) *
                                             LD_BT +
                                         kk + ((lane >> 3) & 1) * 8);
                else
                    load_matrices_transposed(
                        r, sb[cur] + (kk + (lane & 7) + ((lane >> 3) & 1) * 8) * LD_BN +
                               wn * 32 + jj * 16 + (lane >> 4) * 8);
                fb[2 * jj][0] = r[0];
                fb[2 * jj][1] = r[1];
                fb[2 * jj + 1][0] = r[2];
                fb[2 * jj + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) mma(acc[i][j], fa[i], fb[j]);
        }
        if (more) {
            store_values<F>(raw, slot.group, slot.half, sb[nxt] + slot.offset);
            copy_async_wait();
        }
        __syncthreads();
    }

    // A lane holds rows g and g + 8, columns 2t and 2t + 1 of each 16 × 8 accumulator; the
    // width is a multiple of 32, so a pair is inside it whenever its first column is.
    const uint32_t g = lane / 4, c = 2 * (lane % 4);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const uint32_t gr = row0 + wm * 64 + i * 16 + g + 8 * half;
                const uint32_t gc = col0 + wn * 32 + j * 8 + c;
                if (gr < m && gc < width)
                    *reinterpret_cast<__nv_bfloat162*>(out + size_t(gr) * width + gc) =
                        __floats2bfloat162_rn(acc[i][j][2 * half], acc[i][j][2 * half + 1]);
            }
}

#define WARP_BOUNDS __launch_bounds__(THREADS)
TILE_KERNELS_OF_EVERY_FORMAT(tile, tile_product, WARP_BOUNDS)
