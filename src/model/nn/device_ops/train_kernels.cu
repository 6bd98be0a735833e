// The training path's fused kernels on an NVIDIA GPU (see device_ops/cuda.rs): each replaces a
// chain of candle's elementwise ops, every one of which reads and writes the whole tensor, by one
// pass that computes in f32 and rounds once. Built to PTX by build.rs with the `cuda` feature.
//
// Row kernels run one warp per row (blockDim (32, ROWS_PER_BLOCK)); elementwise kernels loop over
// the elements with a grid stride.

#include "common.cuh"

// softmax(scale · s + mask) of each row of `scores` [rows, keys]. The rows are [b, kv, n_rep ·
// queries] flattened, so row r is query r % queries of batch row r / rows_per_batch; the mask is
// f32 [b | 1, queries, keys] (mask_batch_stride 0 when one mask serves every batch row), or null.
// A row whose every position is masked gets zeros.
template <typename T>
__device__ void attn_softmax(const T* scores, const float* mask, T* probs, uint32_t rows,
                             uint32_t keys, float scale, uint32_t queries,
                             uint32_t rows_per_batch, uint32_t mask_batch_stride) {
    const uint32_t row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) return;
    const T* s = scores + (size_t)row * keys;
    T* p = probs + (size_t)row * keys;
    const float* m = mask == nullptr
                         ? nullptr
                         : mask + (size_t)(row / rows_per_batch) * mask_batch_stride +
                               (size_t)(row % queries) * keys;
    float mx = -INFINITY;
    for (uint32_t j = threadIdx.x; j < keys; j += 32) {
        const float v = widen(s[j]) * scale + (m == nullptr ? 0.f : m[j]);
        mx = fmaxf(mx, v);
    }
    mx = warp_max(mx);
    if (mx == -INFINITY) {
        for (uint32_t j = threadIdx.x; j < keys; j += 32) p[j] = narrow<T>(0.f);
        return;
    }
    float sum = 0.f;
    for (uint32_t j = threadIdx.x; j < keys; j += 32) {
        sum += expf(widen(s[j]) * scale + (m == nullptr ? 0.f : m[j]) - mx);
    }
    const float inv = 1.f / warp_sum(sum);
    for (uint32_t j = threadIdx.x; j < keys; j += 32) {
        p[j] = narrow<T>(expf(widen(s[j]) * scale + (m == nullptr ? 0.f : m[j]) - mx) * inv);
    }
}

// The scores' gradient from the softmax's output P and its gradient dP, rows of `keys`:
// dS = scale · P ∘ (dP − Σ P ∘ dP).
template <typename T>
__device__ void attn_softmax_bwd(const T* probs, const T* dprobs, T* dscores, uint32_t rows,
                                 uint32_t keys, float scale) {
    const uint32_t row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) return;
    const size_t base = (size_t)row * keys;
    float dot = 0.f;
    for (uint32_t j = threadIdx.x; j < keys; j += 32) {
        dot += widen(probs[base + j]) * widen(dprobs[base + j]);
    }
    dot = warp_sum(dot);
    for (uint32_t j = threadIdx.x; j < keys; j += 32) {
        const float p = widen(probs[base + j]);
        dscores[base + j] = narrow<T>(scale * p * (widen(dprobs[base + j]) - dot));
    }
}

// RMSNorm's input gradient for rows of `h`: with r = 1 / sqrt(mean(x²) + eps) and g' = g ∘ w,
// dx = r · (g' − x · r² · mean(g' ∘ x)).
template <typename T>
__device__ void rms_norm_bwd(const T* x, const T* grad, const float* w, T* dx, uint32_t rows,
                             uint32_t h, float eps) {
    const uint32_t row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) return;
    const size_t base = (size_t)row * h;
    float sq = 0.f, along = 0.f;
    for (uint32_t j = threadIdx.x; j < h; j += 32) {
        const float xj = widen(x[base + j]);
        sq += xj * xj;
        along += widen(grad[base + j]) * w[j] * xj;
    }
    sq = warp_sum(sq);
    along = warp_sum(along);
    const float r = 1.f / sqrtf(sq / h + eps);
    const float c = r * r * along / h;
    for (uint32_t j = threadIdx.x; j < h; j += 32) {
        dx[base + j] = narrow<T>(r * (widen(grad[base + j]) * w[j] - widen(x[base + j]) * c));
    }
}

// SwiGLU's gradients into `out` [2, n]: d gate = c ∘ up ∘ σ(gate) (1 + gate (1 − σ(gate))),
// then d up = c ∘ silu(gate).
template <typename T>
__device__ void swiglu_bwd(const T* gate, const T* up, const T* grad, T* out, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float g = widen(gate[i]), u = widen(up[i]), c = widen(grad[i]);
        const float sig = 1.f / (1.f + expf(-g));
        out[i] = narrow<T>(c * u * sig * (1.f + g * (1.f - sig)));
        out[(size_t)n + i] = narrow<T>(c * g * sig);
    }
}

constexpr int LOSS_BLOCK = 256;

// Per row of logits [rows, vocab], one block each: out[row] = lse − logits[label] (the negative
// log-likelihood), out[rows + row] = lse (the log-sum-exp). A label outside the vocabulary
// yields NaN.
template <typename T>
__device__ void nll_rows(const T* logits, const uint32_t* labels, float* out, uint32_t rows,
                         uint32_t vocab) {
    __shared__ float scratch[LOSS_BLOCK / 32];
    const uint32_t row = blockIdx.x;
    const T* l = logits + (size_t)row * vocab;
    float mx = -INFINITY;
    for (uint32_t j = threadIdx.x; j < vocab; j += LOSS_BLOCK) mx = fmaxf(mx, widen(l[j]));
    mx = block_max<LOSS_BLOCK>(mx, scratch);
    float sum = 0.f;
    for (uint32_t j = threadIdx.x; j < vocab; j += LOSS_BLOCK) sum += expf(widen(l[j]) - mx);
    sum = block_sum<LOSS_BLOCK>(sum, scratch);
    if (threadIdx.x == 0) {
        const float lse = mx + logf(sum);
        const uint32_t label = labels[row];
        out[row] = label < vocab ? lse - widen(l[label]) : nanf("");
        out[rows + row] = lse;
    }
}

// d nll / d logits = g · (exp(logits − lse) − onehot(label)) for rows of `vocab`, with each
// row's log-sum-exp and incoming gradient g (f32, `lse_grad` [2, rows]); grid (_, rows).
template <typename T>
__device__ void nll_rows_bwd(const T* logits, const uint32_t* labels, const float* lse_grad,
                             T* dlogits, uint32_t rows, uint32_t vocab) {
    const uint32_t row = blockIdx.y;
    const size_t base = (size_t)row * vocab;
    const float lse = lse_grad[row], g = lse_grad[rows + row];
    const uint32_t label = labels[row];
    for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < vocab;
         j += gridDim.x * blockDim.x) {
        const float onehot = label == j ? 1.f : 0.f;
        dlogits[base + j] = narrow<T>(g * (expf(widen(logits[base + j]) - lse) - onehot));
    }
}

#define FOR_TYPES(X) X(float, f32) X(__nv_bfloat16, bf16)

#define ENTRY_POINTS(T, NAME)                                                                   \
    extern "C" __global__ void attn_softmax_##NAME(                                             \
        const T* scores, const float* mask, T* probs, uint32_t rows, uint32_t keys, float scale, \
        uint32_t queries, uint32_t rows_per_batch, uint32_t mask_batch_stride) {                \
        attn_softmax<T>(scores, mask, probs, rows, keys, scale, queries, rows_per_batch,        \
                        mask_batch_stride);                                                     \
    }                                                                                           \
    extern "C" __global__ void attn_softmax_bwd_##NAME(const T* probs, const T* dprobs,         \
                                                       T* dscores, uint32_t rows, uint32_t keys, \
                                                       float scale) {                           \
        attn_softmax_bwd<T>(probs, dprobs, dscores, rows, keys, scale);                         \
    }                                                                                           \
    extern "C" __global__ void rms_norm_bwd_##NAME(const T* x, const T* grad, const float* w,   \
                                                   T* dx, uint32_t rows, uint32_t h,            \
                                                   float eps) {                                 \
        rms_norm_bwd<T>(x, grad, w, dx, rows, h, eps);                                          \
    }                                                                                           \
    extern "C" __global__ void swiglu_##NAME(const T* gate, const T* up, T* out, uint32_t n) {  \
        swiglu<T>(gate, up, out, n);                                                            \
    }                                                                                           \
    extern "C" __global__ void swiglu_bwd_##NAME(const T* gate, const T* up, const T* grad,     \
                                                 T* out, uint32_t n) {                          \
        swiglu_bwd<T>(gate, up, grad, out, n);                                                  \
    }                                                                                           \
    extern "C" __global__ void nll_rows_##NAME(const T* logits, const uint32_t* labels,         \
                                               float* out, uint32_t rows, uint32_t vocab) {     \
        nll_rows<T>(logits, labels, out, rows, vocab);                                          \
    }                                                                                           \
    extern "C" __global__ void nll_rows_bwd_##NAME(const T* logits, const uint32_t* labels,     \
                                                   const float* lse_grad, T* dlogits,           \
                                                   uint32_t rows, uint32_t vocab) {             \
        nll_rows_bwd<T>(logits, labels, lse_grad, dlogits, rows, vocab);                        \
    }

FOR_TYPES(ENTRY_POINTS)

// The optimizer's flat kernels. `table` holds `parts` device pointers to f32 tensors (0 for none),
// then `parts` + 1 offsets: where each tensor starts in the flat vector, and its total length.

// The part that flat element i belongs to: the last p with starts[p] <= i.
__device__ __forceinline__ uint32_t part_of(const uint64_t* starts, uint32_t parts, uint64_t i) {
    uint32_t lo = 0, hi = parts;
    while (hi - lo > 1) {
        const uint32_t mid = (lo + hi) / 2;
        if (starts[mid] <= i) lo = mid; else hi = mid;
    }
    return lo;
}

// Every part copied into the flat vector `out` (zeros for a missing one).
extern "C" __global__ void flatten_parts_f32(const uint64_t* table, uint32_t parts, float* out) {
    const uint64_t* starts = table + parts;
    const uint64_t total = starts[parts];
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t p = part_of(starts, parts, i);
        const float* src = reinterpret_cast<const float*>(table[p]);
        out[i] = src == nullptr ? 0.f : src[i - starts[p]];
    }
}

// One AdamW step (torch.optim.AdamW's arithmetic) over the flat gradient and moments: the new
// moments go to `moments` [2, total] (m, then v), each parameter is updated in place:
// p = p · decay − step_size · m / (sqrt(v) / sqrt_c2 + eps), with decay = 1 − lr · weight decay,
// step_size = lr / (1 − β1^t) and sqrt_c2 = sqrt(1 − β2^t).
extern "C" __global__ void adamw_parts_f32(const uint64_t* table, uint32_t parts,
                                           const float* grads, const float* m, const float* v,
                                           float* moments, float b1, float b2, float eps,
                                           float decay, float step_size, float sqrt_c2) {
    const uint64_t* starts = table + parts;
    const uint64_t total = starts[parts];
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t p = part_of(starts, parts, i);
        float* param = reinterpret_cast<float*>(table[p]) + (i - starts[p]);
        const float g = grads[i];
        const float mi = m[i] * b1 + g * (1.f - b1);
        const float vi = v[i] * b2 + g * g * (1.f - b2);
        moments[i] = mi;
        moments[total + i] = vi;
        *param = *param * decay - mi / (sqrtf(vi) / sqrt_c2 + eps) * step_size;
    }
}
