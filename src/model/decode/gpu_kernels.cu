// The GPU decoder's kernels (see decode/gpu.rs): one decode step of a layer is two RMSNorms, the
// products (matvec for up to MATVEC_MAX_ROWS rows, cuBLAS above), one kernel that rotates q and k
// and stores k and v in the cache, one attention kernel over every head and row, and SwiGLU; the
// step ends advancing the position, which the kernels read from the GPU's memory. Built to PTX by
// build.rs with the `cuda` feature; activations bf16 or f32, arithmetic in f32.

#include "../nn/device_ops/common.cuh"

constexpr int NORM_BLOCK = 256;

// RMSNorm of each row of x [rows, h], one block per row: out = x / sqrt(mean(x²) + eps) · w.
template <typename T>
__device__ void decode_rms_norm(const T* x, const T* w, T* out, uint32_t h, float eps) {
    __shared__ float scratch[NORM_BLOCK / 32];
    const size_t base = (size_t)blockIdx.x * h;
    float sq = 0.f;
    for (uint32_t j = threadIdx.x; j < h; j += NORM_BLOCK) {
        const float v = widen(x[base + j]);
        sq += v * v;
    }
    sq = block_sum<NORM_BLOCK>(sq, scratch);
    const float r = rsqrtf(sq / h + eps);
    for (uint32_t j = threadIdx.x; j < h; j += NORM_BLOCK) {
        out[base + j] = narrow<T>(widen(x[base + j]) * r * widen(w[j]));
    }
}

// Rotate-half RoPE at position `pos` (tables cos, sin [max_len, d / 2]) of a head's pair (j,
// j + d / 2), from `src` to `dst` (which may be the same).
template <typename T>
__device__ __forceinline__ void rotate(const T* src, T* dst, const T* cos, const T* sin,
                                       uint32_t j, uint32_t half) {
    const float a = widen(src[j]), b = widen(src[j + half]);
    const float c = widen(cos[j]), s = widen(sin[j]);
    dst[j] = narrow<T>(a * c - b * s);
    dst[j + half] = narrow<T>(b * c + a * s);
}

// One block per row: q [rows, heads · d] rotated in place; k [rows, kv · d] rotated and v copied
// into the caches [rows, kv, cap, d] at position `pos`.
template <typename T>
__device__ void decode_rope_store(T* q, const T* k, const T* v, const T* cos, const T* sin,
                                  T* k_cache, T* v_cache, uint32_t heads, uint32_t kv,
                                  uint32_t d, uint32_t pos, uint32_t cap) {
    const uint32_t row = blockIdx.x, half = d / 2;
    const T* c = cos + (size_t)pos * half;
    const T* s = sin + (size_t)pos * half;
    for (uint32_t i = threadIdx.x; i < heads * half; i += blockDim.x) {
        T* head = q + ((size_t)row * heads + i / half) * d;
        rotate(head, head, c, s, i % half, half);
    }
    for (uint32_t i = threadIdx.x; i < kv * half; i += blockDim.x) {
        const uint32_t h = i / half;
        const T* src = k + ((size_t)row * kv + h) * d;
        T* dst = k_cache + (((size_t)row * kv + h) * cap + pos) * d;
        rotate(src, dst, c, s, i % half, half);
    }
    for (uint32_t i = threadIdx.x; i < kv * d; i += blockDim.x) {
        const uint32_t h = i / d, j = i % d;
        v_cache[(((size_t)row * kv + h) * cap + pos) * d + j] = v[(size_t)row * kv * d + i];
    }
}

constexpr int ATTENTION_WARPS = 8;
// Value rows a warp loads before it adds them in: their loads are in flight together.
constexpr int VALUE_ROWS = 8;
// Head dimensions up to 32 · MAX_PER_LANE.
constexpr int MAX_PER_LANE = 8;

// The 16 bytes at p as floats: 8 bf16 or 4 f32 (p 16-byte aligned).
__device__ __forceinline__ void load16(const __nv_bfloat16* p, float* out) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float2 f = __bfloat1622float2(pairs[k]);
        out[2 * k] = f.x;
        out[2 * k + 1] = f.y;
    }
}
__device__ __forceinline__ void load16(const float* p, float* out) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
}

// q · k over d elements, q in f32 (shared memory), k a cached key; 16-byte loads of k when
// `vectors` (d a multiple of their width, the cache aligned).
template <typename T>
__device__ __forceinline__ float dot_key(const float* q, const T* k, uint32_t d, bool vectors) {
    constexpr uint32_t V = 16 / sizeof(T);
    float dot = 0.f;
    if (vectors) {
        for (uint32_t i = 0; i < d; i += V) {
            float kf[V];
            load16(k + i, kf);
#pragma unroll
            for (int j = 0; j < V; j++) dot += q[i + j] * kf[j];
        }
    } else {
        for (uint32_t i = 0; i < d; i++) dot += q[i] * widen(k[i]);
    }
    return dot;
}

// Grid (heads, rows), ATTENTION_WARPS warps: query head h of a row attends to its key/value head's
// cached positions pads[row] ..= pos. Each warp takes 32 positions at a time, a lane scoring one
// (so that the loads of 32 keys are in flight together), keeps an online softmax over its chunks
// and adds the values in, VALUE_ROWS rows loaded at a time (a lane holds the head's elements
// lane, lane + 32, ...); then the warps' partial sums are combined. out [rows, heads · d].
template <typename T>
__device__ void decode_attention(const T* q, const T* k_cache, const T* v_cache,
                                 const uint32_t* pads, T* out, uint32_t heads, uint32_t kv,
                                 uint32_t d, uint32_t pos, uint32_t cap, float scale) {
    __shared__ float qs[32 * MAX_PER_LANE];
    __shared__ float part_max[ATTENTION_WARPS], part_sum[ATTENTION_WARPS];
    __shared__ float part_acc[ATTENTION_WARPS][32 * MAX_PER_LANE];
    const uint32_t h = blockIdx.x, row = blockIdx.y, group = h / (heads / kv);
    const uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const T* qh = q + ((size_t)row * heads + h) * d;
    for (uint32_t i = threadIdx.x; i < d; i += blockDim.x) qs[i] = widen(qh[i]) * scale;
    __syncthreads();
    const size_t head = ((size_t)row * kv + group) * cap;
    const bool vectors = d % (16 / sizeof(T)) == 0 && (uintptr_t)k_cache % 16 == 0;
    float acc[MAX_PER_LANE];
#pragma unroll
    for (int e = 0; e < MAX_PER_LANE; e++) acc[e] = 0.f;
    float mx = -INFINITY, sum = 0.f;
    for (uint32_t base = pads[row] + warp * 32; base <= pos; base += ATTENTION_WARPS * 32) {
        const uint32_t p = base + lane;
        const float s = p <= pos ? dot_key(qs, k_cache + (head + p) * d, d, vectors) : -INFINITY;
        const float next = fmaxf(mx, warp_max(s));
        const float keep = expf(mx - next);
        const float w = p <= pos ? expf(s - next) : 0.f;
        sum = sum * keep + warp_sum(w);
#pragma unroll
        for (int e = 0; e < MAX_PER_LANE; e++) acc[e] *= keep;
        const uint32_t n = min(32u, pos - base + 1);
        for (uint32_t j0 = 0; j0 < n; j0 += VALUE_ROWS) {
            float wj[VALUE_ROWS];
            T vals[VALUE_ROWS][MAX_PER_LANE];
#pragma unroll
            for (int u = 0; u < VALUE_ROWS; u++) {
                const uint32_t j = j0 + u;
                // Every lane shuffles (j is the same in all of them); rows past n weigh 0.
                wj[u] = __shfl_sync(0xffffffff, w, j % 32);
                const T* vp = v_cache + (head + base + min(j, n - 1)) * d;
#pragma unroll
                for (int e = 0; e < MAX_PER_LANE; e++) {
                    const uint32_t i = lane + 32 * e;
                    vals[u][e] = i < d ? vp[i] : narrow<T>(0.f);
                }
                if (j >= n) wj[u] = 0.f;
            }
#pragma unroll
            for (int u = 0; u < VALUE_ROWS; u++) {
#pragma unroll
                for (int e = 0; e < MAX_PER_LANE; e++) acc[e] += wj[u] * widen(vals[u][e]);
            }
        }
        mx = next;
    }
    if (lane == 0) {
        part_max[warp] = mx;
        part_sum[warp] = sum;
    }
#pragma unroll
    for (int e = 0; e < MAX_PER_LANE; e++) part_acc[warp][lane + 32 * e] = acc[e];
    __syncthreads();
    if (warp != 0) return;
    float top = -INFINITY;
    for (int w = 0; w < ATTENTION_WARPS; w++) top = fmaxf(top, part_max[w]);
    float total = 0.f, o[MAX_PER_LANE] = {0.f};
    for (int w = 0; w < ATTENTION_WARPS; w++) {
        const float c = part_max[w] == -INFINITY ? 0.f : expf(part_max[w] - top);
        total += part_sum[w] * c;
#pragma unroll
        for (int e = 0; e < MAX_PER_LANE; e++) o[e] += part_acc[w][lane + 32 * e] * c;
    }
    T* oh = out + ((size_t)row * heads + h) * d;
#pragma unroll
    for (int e = 0; e < MAX_PER_LANE; e++) {
        const uint32_t i = lane + 32 * e;
        if (i < d) oh[i] = narrow<T>(total > 0.f ? o[e] / total : 0.f);
    }
}

// y [rows, n] += bias [n], `total` = rows · n elements.
template <typename T>
__device__ void decode_add_bias(T* y, const T* bias, uint32_t n, uint32_t total) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += gridDim.x * blockDim.x) {
        y[i] = narrow<T>(widen(y[i]) + widen(bias[i % n]));
    }
}

constexpr int MATVEC_WARPS = 4;
constexpr int MATVEC_MAX_ROWS = 4;

// y [rows, out] = alpha · x [rows, in] · W [out, in]^T (+ bias [out], + y when `accumulate`),
// rows ≤ MATVEC_MAX_ROWS; one warp per output, reading its row of W once for every row of x, in
// 16-byte loads where the sizes and addresses allow. bias may be null.
template <typename T, typename Y>
__device__ void matvec(const T* w, const T* x, Y* y, const T* bias, uint32_t out, uint32_t in,
                       uint32_t rows, float alpha, uint32_t accumulate) {
    const uint32_t lane = threadIdx.x % 32;
    const uint32_t o = blockIdx.x * MATVEC_WARPS + threadIdx.x / 32;
    if (o >= out) return;
    float acc[MATVEC_MAX_ROWS];
#pragma unroll
    for (int r = 0; r < MATVEC_MAX_ROWS; r++) acc[r] = 0.f;
    const T* wo = w + (size_t)o * in;
    constexpr uint32_t V = 16 / sizeof(T);
    const bool vectors = in % V == 0 && ((uintptr_t)w | (uintptr_t)x) % 16 == 0;
    if (vectors) {
        for (uint32_t i = lane * V; i < in; i += 32 * V) {
            float wf[V], xf[V];
            load16(wo + i, wf);
#pragma unroll
            for (int r = 0; r < MATVEC_MAX_ROWS; r++) {
                if (r < rows) {
                    load16(x + (size_t)r * in + i, xf);
#pragma unroll
                    for (int k = 0; k < V; k++) acc[r] += wf[k] * xf[k];
                }
            }
        }
    } else {
        for (uint32_t i = lane; i < in; i += 32) {
            const float wf = widen(wo[i]);
#pragma unroll
            for (int r = 0; r < MATVEC_MAX_ROWS; r++) {
                if (r < rows) acc[r] += wf * widen(x[(size_t)r * in + i]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < MATVEC_MAX_ROWS; r++) {
        if (r < rows) acc[r] = warp_sum(acc[r]);
    }
    if (lane != 0) return;
    const float b = bias == nullptr ? 0.f : widen(bias[o]);
#pragma unroll
    for (int r = 0; r < MATVEC_MAX_ROWS; r++) {
        if (r < rows) {
            Y* target = y + (size_t)r * out + o;
            const float v = alpha * acc[r] + b + (accumulate ? widen(*target) : 0.f);
            *target = narrow<Y>(v);
        }
    }
}

#define FOR_TYPES(X) X(float, f32) X(__nv_bfloat16, bf16)

#define ENTRY_POINTS(T, NAME)                                                                   \
    extern "C" __global__ void decode_rms_norm_##NAME(const T* x, const T* w, T* out,          \
                                                      uint32_t h, float eps) {                 \
        decode_rms_norm<T>(x, w, out, h, eps);                                                  \
    }                                                                                           \
    extern "C" __global__ void decode_rope_store_##NAME(                                        \
        T* q, const T* k, const T* v, const T* cos, const T* sin, T* k_cache, T* v_cache,       \
        uint32_t heads, uint32_t kv, uint32_t d, const uint32_t* pos, uint32_t cap) {           \
        decode_rope_store<T>(q, k, v, cos, sin, k_cache, v_cache, heads, kv, d, *pos, cap);     \
    }                                                                                           \
    extern "C" __global__ void decode_attention_##NAME(                                         \
        const T* q, const T* k_cache, const T* v_cache, const uint32_t* pads, T* out,           \
        uint32_t heads, uint32_t kv, uint32_t d, const uint32_t* pos, uint32_t cap,             \
        float scale) {                                                                          \
        decode_attention<T>(q, k_cache, v_cache, pads, out, heads, kv, d, *pos, cap, scale);    \
    }                                                                                           \
    extern "C" __global__ void decode_swiglu_##NAME(const T* gate, const T* up, T* out,       \
                                                    uint32_t n) {                               \
        swiglu<T>(gate, up, out, n);                                                            \
    }                                                                                           \
    extern "C" __global__ void decode_matvec_##NAME(const T* w, const T* x, T* y, const T* bias, \
                                                    uint32_t out, uint32_t in, uint32_t rows,   \
                                                    float alpha, uint32_t accumulate) {         \
        matvec<T, T>(w, x, y, bias, out, in, rows, alpha, accumulate);                          \
    }                                                                                           \
    extern "C" __global__ void decode_matvec_logits_##NAME(                                     \
        const T* w, const T* x, float* y, const T* bias, uint32_t out, uint32_t in,             \
        uint32_t rows, float alpha, uint32_t accumulate) {                                      \
        matvec<T, float>(w, x, y, bias, out, in, rows, alpha, accumulate);                      \
    }                                                                                           \
    extern "C" __global__ void decode_add_bias_##NAME(T* y, const T* bias, uint32_t n,          \
                                                      uint32_t total) {                         \
        decode_add_bias<T>(y, bias, n, total);                                                  \
    }

FOR_TYPES(ENTRY_POINTS)

// The step's last launch: the position the next step writes and attends to. The position lives on
// the GPU so that a captured step (a CUDA graph) replays unchanged.
extern "C" __global__ void decode_advance(uint32_t* pos) {
    if (blockIdx.x == 0 && threadIdx.x == 0) *pos += 1;
}
