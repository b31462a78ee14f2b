// Cross-entropy fused with log-softmax (PyTorch semantics): per row, with q = (1-eps)*onehot(t) + eps/C,
//   loss = (1-eps)*(lse - x[t]) + eps*(lse - mean(x))
// rows whose target is ignore_index give no loss and a zero gradient; the mean divides by the counted rows
// (0/0 = NaN when every row is ignored). A target outside [0, C) that is not ignore_index gives a NaN loss.
// No probability tensor is kept: the backward recomputes (max, sum) per row and writes the gradient directly.
// Logits, the loss and the gradient are T (fp32, bf16, fp16; math in fp32); row losses and the count are fp32.

template <typename T, typename TI>
__device__ __forceinline__ void ce_fwd(const T* __restrict__ x, const TI* __restrict__ t, float* __restrict__ loss, int cols, i64 ignore, float eps, int vec)
{
    __shared__ float sh[64];
    i64 row = blockIdx.x;
    i64 y = (i64)t[row];
    if (y == ignore) { if (threadIdx.x == 0) loss[row] = 0.f; return; }
    const T* xr = x + row * cols;
    float m = KILN_NEG_INF, s = 0.f, sum = 0.f;
    if (vec)
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4)
        {
            kf4 v = ld4(xr, i);
            online_add(m, s, v.x); online_add(m, s, v.y); online_add(m, s, v.z); online_add(m, s, v.w);
            sum += (v.x + v.y) + (v.z + v.w);
        }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x) { float v = ld(xr, i); online_add(m, s, v); sum += v; }
    block_online(m, s, sh);
    if (eps != 0.f) sum = block_sum(sum, sh);
    if (threadIdx.x == 0)
    {
        float lse = m + logf(s);
        if (y < 0 || y >= cols) { loss[row] = __int_as_float(0x7fc00000); return; }
        float l = (1.f - eps) * (lse - ld(xr, y));
        if (eps != 0.f) l += eps * (lse - sum / (float)cols);
        loss[row] = l;
    }
}
#define CE_FWD(T, SUF) \
extern "C" __global__ void ce_fwd_##SUF##_i64(const T* x, const i64* t, float* loss, int cols, i64 ignore, float eps, int vec) { ce_fwd<T, i64>(x, t, loss, cols, ignore, eps, vec); } \
extern "C" __global__ void ce_fwd_##SUF##_i32(const T* x, const int* t, float* loss, int cols, i64 ignore, float eps, int vec) { ce_fwd<T, int>(x, t, loss, cols, ignore, eps, vec); }
CE_FWD(float, f32)
CE_FWD(bf16, bf16)
CE_FWD(f16, f16)

// One block: out[0] = sum of the counted rows' losses / count (in double); count_out[0] = count when not null.
// loss may be null (the backward only needs the count).
template <typename T, typename TI>
__device__ __forceinline__ void ce_mean(const float* __restrict__ loss, const TI* __restrict__ t, i64 rows, i64 ignore, T* out, float* count_out)
{
    __shared__ double sh[64];
    double s = 0.0, c = 0.0;
    for (i64 r = threadIdx.x; r < rows; r += blockDim.x)
        if ((i64)t[r] != ignore) { if (loss) s += (double)loss[r]; c += 1.0; }
    s = warp_sum_d(s); c = warp_sum_d(c);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) { sh[w] = s; sh[32 + w] = c; }
    __syncthreads();
    if (w == 0)
    {
        s = lane < nw ? sh[lane] : 0.0; c = lane < nw ? sh[32 + lane] : 0.0;
        s = warp_sum_d(s); c = warp_sum_d(c);
        if (lane == 0)
        {
            if (out) st(out, 0, (float)(s / c));
            if (count_out) count_out[0] = (float)c;
        }
    }
}
#define CE_MEAN(T, SUF) \
extern "C" __global__ void ce_mean_##SUF##_i64(const float* loss, const i64* t, i64 rows, i64 ignore, T* out, float* count_out) { ce_mean<T, i64>(loss, t, rows, ignore, out, count_out); } \
extern "C" __global__ void ce_mean_##SUF##_i32(const float* loss, const int* t, i64 rows, i64 ignore, T* out, float* count_out) { ce_mean<T, int>(loss, t, rows, ignore, out, count_out); }
CE_MEAN(float, f32)
CE_MEAN(bf16, bf16)
CE_MEAN(f16, f16)

// dx = (softmax(x) - q) * g[0] / count[0] on counted rows, 0 on ignored rows. g and count are device scalars.
template <typename T, typename TI>
__device__ __forceinline__ void ce_bwd(const T* __restrict__ x, const TI* __restrict__ t, const T* __restrict__ g, const float* __restrict__ count,
    T* __restrict__ dx, int cols, i64 ignore, float eps, int vec)
{
    __shared__ float sh[64];
    i64 row = blockIdx.x;
    i64 y = (i64)t[row];
    const T* xr = x + row * cols;
    T* dr = dx + row * cols;
    if (y == ignore)
    {
        for (int i = threadIdx.x; i < cols; i += blockDim.x) st(dr, i, 0.f);
        return;
    }
    float m = KILN_NEG_INF, s = 0.f;
    if (vec)
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4)
        {
            kf4 v = ld4(xr, i);
            online_add(m, s, v.x); online_add(m, s, v.y); online_add(m, s, v.z); online_add(m, s, v.w);
        }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x) online_add(m, s, ld(xr, i));
    block_online(m, s, sh);
    float scale = ld(g, 0) / count[0];
    float ps = scale / s, off = eps / (float)cols * scale, hit = (1.f - eps) * scale;
    if (vec)
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4)
        {
            kf4 v = ld4(xr, i);
            v.x = expf(v.x - m) * ps - off - (i == y ? hit : 0.f);
            v.y = expf(v.y - m) * ps - off - (i + 1 == y ? hit : 0.f);
            v.z = expf(v.z - m) * ps - off - (i + 2 == y ? hit : 0.f);
            v.w = expf(v.w - m) * ps - off - (i + 3 == y ? hit : 0.f);
            st4(dr, i, v);
        }
    else
        for (int i = threadIdx.x; i < cols; i += blockDim.x)
            st(dr, i, expf(ld(xr, i) - m) * ps - off - (i == y ? hit : 0.f));
}
#define CE_BWD(T, SUF) \
extern "C" __global__ void ce_bwd_##SUF##_i64(const T* x, const i64* t, const T* g, const float* count, T* dx, int cols, i64 ignore, float eps, int vec) { ce_bwd<T, i64>(x, t, g, count, dx, cols, ignore, eps, vec); } \
extern "C" __global__ void ce_bwd_##SUF##_i32(const T* x, const int* t, const T* g, const float* count, T* dx, int cols, i64 ignore, float eps, int vec) { ce_bwd<T, int>(x, t, g, count, dx, cols, ignore, eps, vec); }
CE_BWD(float, f32)
CE_BWD(bf16, bf16)
CE_BWD(f16, f16)
