// RMSNorm and LayerNorm over the last axis (same math as Kiln.Cpu.RowKernels / NormGradKernels).
// Forward: one block per row. Backward: each block walks rows blockIdx.x, +gridDim.x, ... writing dx and
// accumulating its own dw (| db) partial row in `part` ([gridDim.x, P] floats, no atomics); reduce_partials
// then sums the partial rows.

// y = x / sqrt(mean(x^2) + eps) * w
template <typename T>
__device__ __forceinline__ void rmsnorm_fwd(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int cols, float eps, int vec)
{
    __shared__ float sh[64];
    const T* xr = x + (i64)blockIdx.x * cols;
    T* yr = y + (i64)blockIdx.x * cols;
    float ss = 0.f;
    if (vec)
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4) { kf4 v = ld4(xr, i); ss += (v.x * v.x + v.y * v.y) + (v.z * v.z + v.w * v.w); }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x) { float v = ld(xr, i); ss += v * v; }
    ss = block_sum(ss, sh);
    float r = 1.f / sqrtf(ss / (float)cols + eps);
    if (vec)
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4)
        {
            kf4 v = ld4(xr, i), wv = ld4(w, i);
            v.x = v.x * r * wv.x; v.y = v.y * r * wv.y; v.z = v.z * r * wv.z; v.w = v.w * r * wv.w;
            st4(yr, i, v);
        }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x) st(yr, i, ld(xr, i) * r * ld(w, i));
}
// Rows held in registers (vec, cols <= 4 * blockDim * K): x is read once from memory, each thread keeping its
// K groups of four between the sum of squares and the write (the form above reads the row twice).
template <typename T, int K>
__device__ __forceinline__ void rmsnorm_fwd_regs(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int cols, float eps)
{
    __shared__ float sh[64];
    const T* xr = x + (i64)blockIdx.x * cols;
    T* yr = y + (i64)blockIdx.x * cols;
    kf4 v[K];
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k)
    {
        int i = (threadIdx.x + k * blockDim.x) * 4;
        if (i < cols) { v[k] = ld4(xr, i); ss += (v[k].x * v[k].x + v[k].y * v[k].y) + (v[k].z * v[k].z + v[k].w * v[k].w); }
    }
    ss = block_sum(ss, sh);
    float r = 1.f / sqrtf(ss / (float)cols + eps);
#pragma unroll
    for (int k = 0; k < K; ++k)
    {
        int i = (threadIdx.x + k * blockDim.x) * 4;
        if (i < cols)
        {
            kf4 wv = ld4(w, i), o;
            o.x = v[k].x * r * wv.x; o.y = v[k].y * r * wv.y; o.z = v[k].z * r * wv.z; o.w = v[k].w * r * wv.w;
            st4(yr, i, o);
        }
    }
}

// regs = K > 0: the register path with K groups of four per thread (vec implied); 0: the general one.
template <typename T>
__device__ __forceinline__ void rmsnorm_any(const T* x, const T* w, T* y, int cols, float eps, int vec, int regs)
{
    switch (regs)
    {
        case 1: rmsnorm_fwd_regs<T, 1>(x, w, y, cols, eps); break;
        case 2: rmsnorm_fwd_regs<T, 2>(x, w, y, cols, eps); break;
        case 4: rmsnorm_fwd_regs<T, 4>(x, w, y, cols, eps); break;
        case 8: rmsnorm_fwd_regs<T, 8>(x, w, y, cols, eps); break;
        default: rmsnorm_fwd<T>(x, w, y, cols, eps, vec); break;
    }
}

extern "C" __global__ void rmsnorm_f32(const float* x, const float* w, float* y, int cols, float eps, int vec, int regs) { rmsnorm_any<float>(x, w, y, cols, eps, vec, regs); }
extern "C" __global__ void rmsnorm_bf16(const bf16* x, const bf16* w, bf16* y, int cols, float eps, int vec, int regs) { rmsnorm_any<bf16>(x, w, y, cols, eps, vec, regs); }
extern "C" __global__ void rmsnorm_f16(const f16* x, const f16* w, f16* y, int cols, float eps, int vec, int regs) { rmsnorm_any<f16>(x, w, y, cols, eps, vec, regs); }

// y = (x - mean) / sqrt(var + eps) * w + b (biased variance, two passes for the variance)
template <typename T>
__device__ __forceinline__ void layernorm_fwd(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y, int cols, float eps, int vec)
{
    __shared__ float sh[64];
    const T* xr = x + (i64)blockIdx.x * cols;
    T* yr = y + (i64)blockIdx.x * cols;
    float s = 0.f;
    if (vec)
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4) { kf4 v = ld4(xr, i); s += (v.x + v.y) + (v.z + v.w); }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x) s += ld(xr, i);
    float mean = block_sum(s, sh) / (float)cols;
    float q = 0.f;
    if (vec)
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4)
        {
            kf4 v = ld4(xr, i);
            float a = v.x - mean, bb = v.y - mean, c = v.z - mean, d = v.w - mean;
            q += (a * a + bb * bb) + (c * c + d * d);
        }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x) { float d = ld(xr, i) - mean; q += d * d; }
    float r = 1.f / sqrtf(block_sum(q, sh) / (float)cols + eps);
    if (vec)
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4)
        {
            kf4 v = ld4(xr, i), wv = ld4(w, i), bv = ld4(b, i);
            v.x = (v.x - mean) * r * wv.x + bv.x; v.y = (v.y - mean) * r * wv.y + bv.y;
            v.z = (v.z - mean) * r * wv.z + bv.z; v.w = (v.w - mean) * r * wv.w + bv.w;
            st4(yr, i, v);
        }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x) st(yr, i, (ld(xr, i) - mean) * r * ld(w, i) + ld(b, i));
}
extern "C" __global__ void layernorm_f32(const float* x, const float* w, const float* b, float* y, int cols, float eps, int vec) { layernorm_fwd<float>(x, w, b, y, cols, eps, vec); }
extern "C" __global__ void layernorm_bf16(const bf16* x, const bf16* w, const bf16* b, bf16* y, int cols, float eps, int vec) { layernorm_fwd<bf16>(x, w, b, y, cols, eps, vec); }
extern "C" __global__ void layernorm_f16(const f16* x, const f16* w, const f16* b, f16* y, int cols, float eps, int vec) { layernorm_fwd<f16>(x, w, b, y, cols, eps, vec); }

// Backward kernels: x, w, g and dx in T (computed in fp32); the per-block weight/bias partials are fp32 and
// reduce_partials rounds their sums to T once. One entry point per storage type:
#define NORM_BWD_ENTRY(KIND, T, SUF) \
extern "C" __global__ void KIND##_bwd_##SUF(const T* x, const T* w, const T* g, T* dx, float* part, i64 rows, int cols, float eps) \
{ KIND##_bwd<T>(x, w, g, dx, part, rows, cols, eps); }
#define NORM_BWD_ENTRIES(KIND) NORM_BWD_ENTRY(KIND, float, f32) NORM_BWD_ENTRY(KIND, bf16, bf16) NORM_BWD_ENTRY(KIND, f16, f16)
// r = 1/sqrt(mean(x^2)+eps); dx = r*(g*w) - x*r^3*mean(g*w*x); part[blk, c] += g*x*r
template <typename T>
__device__ __forceinline__ void rmsnorm_bwd(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ g,
    T* __restrict__ dx, float* __restrict__ part, i64 rows, int cols, float eps)
{
    __shared__ float sh[64];
    float* pr = part + (i64)blockIdx.x * cols;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) pr[i] = 0.f;
    float n = (float)cols;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        const T* xr = x + row * cols; const T* gr = g + row * cols; T* dr = dx + row * cols;
        float ss = 0.f, gwx = 0.f;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) { float xv = ld(xr, i); ss += xv * xv; gwx += ld(gr, i) * ld(w, i) * xv; }
        block_sum2(ss, gwx, sh);
        float r = 1.f / sqrtf(ss / n + eps);
        float k = gwx / n * r * r * r;
        for (int i = threadIdx.x; i < cols; i += blockDim.x)
        {
            float xv = ld(xr, i), gv = ld(gr, i);
            st(dr, i, gv * ld(w, i) * r - xv * k);
            pr[i] += gv * xv * r;
        }
    }
}
NORM_BWD_ENTRIES(rmsnorm)

// xh = (x-mean)*r; gw = g*w; dx = r*(gw - mean(gw) - xh*mean(gw*xh)); part[blk, c] += g*xh; part[blk, cols + c] += g
template <typename T>
__device__ __forceinline__ void layernorm_bwd(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ g,
    T* __restrict__ dx, float* __restrict__ part, i64 rows, int cols, float eps)
{
    __shared__ float sh[64];
    float* pr = part + (i64)blockIdx.x * 2 * cols;
    for (int i = threadIdx.x; i < 2 * cols; i += blockDim.x) pr[i] = 0.f;
    float n = (float)cols;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        const T* xr = x + row * cols; const T* gr = g + row * cols; T* dr = dx + row * cols;
        float s = 0.f;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) s += ld(xr, i);
        float mean = block_sum(s, sh) / n;
        float q = 0.f;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) { float d = ld(xr, i) - mean; q += d * d; }
        float r = 1.f / sqrtf(block_sum(q, sh) / n + eps);
        float sg = 0.f, sgx = 0.f;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) { float gw = ld(gr, i) * ld(w, i); sg += gw; sgx += gw * (ld(xr, i) - mean) * r; }
        block_sum2(sg, sgx, sh);
        float mg = sg / n, mgx = sgx / n;
        for (int i = threadIdx.x; i < cols; i += blockDim.x)
        {
            float gv = ld(gr, i), xh = (ld(xr, i) - mean) * r;
            st(dr, i, (gv * ld(w, i) - mg - xh * mgx) * r);
            pr[i] += gv * xh;
            pr[cols + i] += gv;
        }
    }
}
NORM_BWD_ENTRIES(layernorm)

// out0[c] = sum_b part[b, c] for c < split; out1[c - split] = the same for split <= c < width.
template <typename T>
__device__ __forceinline__ void reduce_partials(const float* __restrict__ part, int blocks, int width, int split, T* out0, T* out1)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < width; c += gridDim.x * blockDim.x)
    {
        float s = 0.f;
        for (int b = 0; b < blocks; b++) s += part[(i64)b * width + c];
        if (c < split) st(out0, c, s); else st(out1, c - split, s);
    }
}
extern "C" __global__ void reduce_partials_f32(const float* part, int blocks, int width, int split, float* out0, float* out1) { reduce_partials<float>(part, blocks, width, split, out0, out1); }
extern "C" __global__ void reduce_partials_bf16(const float* part, int blocks, int width, int split, bf16* out0, bf16* out1) { reduce_partials<bf16>(part, blocks, width, split, out0, out1); }
extern "C" __global__ void reduce_partials_f16(const float* part, int blocks, int width, int split, f16* out0, f16* out1) { reduce_partials<f16>(part, blocks, width, split, out0, out1); }
