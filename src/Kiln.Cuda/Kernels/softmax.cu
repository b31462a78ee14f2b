// softmax / log_softmax over the last axis: one block per row, (max, sum) in one online pass, then the write.
// vec != 0: cols % 4 == 0 and the rows are 16-byte (fp32) / 8-byte (bf16) aligned, so 4 elements per load.

template <typename T, bool LOG>
__device__ __forceinline__ void softmax_fwd(const T* __restrict__ x, T* __restrict__ y, int cols, int vec)
{
    __shared__ float sh[64];
    const T* xr = x + (i64)blockIdx.x * cols;
    T* yr = y + (i64)blockIdx.x * cols;
    float m = KILN_NEG_INF, s = 0.f;
    if (vec)
    {
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4)
        {
            kf4 v = ld4(xr, i);
            online_add(m, s, v.x); online_add(m, s, v.y); online_add(m, s, v.z); online_add(m, s, v.w);
        }
    }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x) online_add(m, s, ld(xr, i));
    block_online(m, s, sh);
    float lse = m + logf(s), inv = 1.f / s;
    if (vec)
    {
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4)
        {
            kf4 v = ld4(xr, i);
            if (LOG) { v.x -= lse; v.y -= lse; v.z -= lse; v.w -= lse; }
            else { v.x = expf(v.x - m) * inv; v.y = expf(v.y - m) * inv; v.z = expf(v.z - m) * inv; v.w = expf(v.w - m) * inv; }
            st4(yr, i, v);
        }
    }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x)
        {
            float v = ld(xr, i);
            st(yr, i, LOG ? v - lse : expf(v - m) * inv);
        }
}

// Rows that fit in registers (vec, cols <= 4 * blockDim * K): x is read once, each thread keeps its K groups
// of four, and every element costs one expf (the online form above pays a rescale per new maximum and reads x
// twice). This is the path for the usual row lengths (up to 8192 with 256 threads).
template <typename T, bool LOG, int K>
__device__ __forceinline__ void softmax_fwd_regs(const T* __restrict__ x, T* __restrict__ y, int cols)
{
    __shared__ float sh[64];
    const T* xr = x + (i64)blockIdx.x * cols;
    T* yr = y + (i64)blockIdx.x * cols;
    kf4 v[K];
    float m = KILN_NEG_INF;
#pragma unroll
    for (int k = 0; k < K; ++k)
    {
        int i = (threadIdx.x + k * blockDim.x) * 4;
        if (i < cols) { v[k] = ld4(xr, i); m = fmaxf(m, fmaxf(fmaxf(v[k].x, v[k].y), fmaxf(v[k].z, v[k].w))); }
    }
    m = block_max(m, sh);
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k)
    {
        int i = (threadIdx.x + k * blockDim.x) * 4;
        if (i < cols)
        {
            kf4 e; e.x = expf(v[k].x - m); e.y = expf(v[k].y - m); e.z = expf(v[k].z - m); e.w = expf(v[k].w - m);
            s += (e.x + e.y) + (e.z + e.w);
            if (!LOG) v[k] = e;
        }
    }
    s = block_sum(s, sh);
    float lse = m + logf(s), inv = 1.f / s;
#pragma unroll
    for (int k = 0; k < K; ++k)
    {
        int i = (threadIdx.x + k * blockDim.x) * 4;
        if (i < cols)
        {
            kf4 r = v[k];
            if (LOG) { r.x -= lse; r.y -= lse; r.z -= lse; r.w -= lse; }
            else { r.x *= inv; r.y *= inv; r.z *= inv; r.w *= inv; }
            st4(yr, i, r);
        }
    }
}

// regs = K > 0: the register path with K groups of four per thread (vec implied); 0: the general one.
template <typename T, bool LOG>
__device__ __forceinline__ void softmax_any(const T* x, T* y, int cols, int vec, int regs)
{
    switch (regs)
    {
        case 1: softmax_fwd_regs<T, LOG, 1>(x, y, cols); break;
        case 2: softmax_fwd_regs<T, LOG, 2>(x, y, cols); break;
        case 4: softmax_fwd_regs<T, LOG, 4>(x, y, cols); break;
        case 8: softmax_fwd_regs<T, LOG, 8>(x, y, cols); break;
        default: softmax_fwd<T, LOG>(x, y, cols, vec); break;
    }
}

extern "C" __global__ void softmax_f32(const float* x, float* y, int cols, int vec, int regs) { softmax_any<float, false>(x, y, cols, vec, regs); }
extern "C" __global__ void softmax_bf16(const bf16* x, bf16* y, int cols, int vec, int regs) { softmax_any<bf16, false>(x, y, cols, vec, regs); }
extern "C" __global__ void log_softmax_f32(const float* x, float* y, int cols, int vec, int regs) { softmax_any<float, true>(x, y, cols, vec, regs); }
extern "C" __global__ void log_softmax_bf16(const bf16* x, bf16* y, int cols, int vec, int regs) { softmax_any<bf16, true>(x, y, cols, vec, regs); }
extern "C" __global__ void softmax_f16(const f16* x, f16* y, int cols, int vec, int regs) { softmax_any<f16, false>(x, y, cols, vec, regs); }
extern "C" __global__ void log_softmax_f16(const f16* x, f16* y, int cols, int vec, int regs) { softmax_any<f16, true>(x, y, cols, vec, regs); }

// Backward from the output y and the upstream gradient g:
//   softmax:     dx = y * (g - sum(g * y))
//   log_softmax: dx = g - exp(y) * sum(g)
template <typename T, bool LOG>
__device__ __forceinline__ void softmax_bwd(const T* __restrict__ y, const T* __restrict__ g, T* __restrict__ dx, int cols, int vec)
{
    __shared__ float sh[64];
    i64 off = (i64)blockIdx.x * cols;
    const T* yr = y + off; const T* gr = g + off; T* dr = dx + off;
    float acc = 0.f;
    if (vec)
    {
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4)
        {
            kf4 gv = ld4(gr, i);
            if (LOG) acc += (gv.x + gv.y) + (gv.z + gv.w);
            else { kf4 yv = ld4(yr, i); acc += (gv.x * yv.x + gv.y * yv.y) + (gv.z * yv.z + gv.w * yv.w); }
        }
    }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x) acc += LOG ? ld(gr, i) : ld(gr, i) * ld(yr, i);
    acc = block_sum(acc, sh);
    if (vec)
    {
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4)
        {
            kf4 gv = ld4(gr, i), yv = ld4(yr, i), r;
            if (LOG) { r.x = gv.x - expf(yv.x) * acc; r.y = gv.y - expf(yv.y) * acc; r.z = gv.z - expf(yv.z) * acc; r.w = gv.w - expf(yv.w) * acc; }
            else { r.x = yv.x * (gv.x - acc); r.y = yv.y * (gv.y - acc); r.z = yv.z * (gv.z - acc); r.w = yv.w * (gv.w - acc); }
            st4(dr, i, r);
        }
    }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x)
        {
            float gv = ld(gr, i), yv = ld(yr, i);
            st(dr, i, LOG ? gv - expf(yv) * acc : yv * (gv - acc));
        }
}

extern "C" __global__ void softmax_bwd_f32(const float* y, const float* g, float* dx, int cols, int vec) { softmax_bwd<float, false>(y, g, dx, cols, vec); }
extern "C" __global__ void log_softmax_bwd_f32(const float* y, const float* g, float* dx, int cols, int vec) { softmax_bwd<float, true>(y, g, dx, cols, vec); }
extern "C" __global__ void softmax_bwd_bf16(const bf16* y, const bf16* g, bf16* dx, int cols, int vec) { softmax_bwd<bf16, false>(y, g, dx, cols, vec); }
extern "C" __global__ void log_softmax_bwd_bf16(const bf16* y, const bf16* g, bf16* dx, int cols, int vec) { softmax_bwd<bf16, true>(y, g, dx, cols, vec); }
extern "C" __global__ void softmax_bwd_f16(const f16* y, const f16* g, f16* dx, int cols, int vec) { softmax_bwd<f16, false>(y, g, dx, cols, vec); }
extern "C" __global__ void log_softmax_bwd_f16(const f16* y, const f16* g, f16* dx, int cols, int vec) { softmax_bwd<f16, true>(y, g, dx, cols, vec); }
