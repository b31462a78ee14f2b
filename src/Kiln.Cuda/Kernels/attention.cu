// Fused attention, head_dim <= 128, flash-style: no T x S matrix is materialized. q, k, v, o and dO are T (fp32,
// bf16 or fp16), everything else fp32 (shared tiles, lse, delta, and dq/dk/dv, which the backward accumulates).
// Layout: q, o, dq [B, Hq, T, D]; k, v, dk, dv [B, Hkv, S, D]; lse, delta [B, Hq, T]. GQA: q head h reads kv head
// h / (Hq / Hkv). Causal is bottom-right aligned: query i sees keys j <= i + S - T (a row that sees no key gives
// o = 0 and lse = -inf). Scores are scale * q.k.
// valid (may be null; int32 or int64 by valid64): the number of keys in use, read on the device (a KV cache with
// spare capacity, so a decode step needs no host read and can be replayed from a CUDA graph); the slots past it
// are ignored and it replaces S in the causal alignment. A count outside [max(T, 1), S] is recorded in err
// ([flag, count, S, 4]) for the host to report, and the kernel writes nothing.
#define ATT_DMAX 128
#define ATT_BC 32

// Forward: a block (4 warps) owns 16 query rows (4 per warp); key/value tiles of 32 rows are staged in shared
// memory; each lane scores one key of the tile, the online softmax runs per row with warp reductions, and
// each lane accumulates the output columns lane, lane+32, lane+64, lane+96.
#define ATT_BR 16

// The keys in use (S, or the device count), or -1 after recording a bad count.
__device__ __forceinline__ int att_keys(const void* valid, int valid64, int T, int S, i64* err)
{
    if (!valid) return S;
    i64 n = valid64 ? *(const i64*)valid : (i64)*(const int*)valid;
    if (n >= 1 && n <= S && n >= T) return (int)n;
    if (err && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && atomicCAS((unsigned long long*)err, 0ULL, 1ULL) == 0ULL)
    { err[1] = n; err[2] = S; err[3] = 4; }
    return -1;
}

template <typename E>
__device__ __forceinline__ void attn_fwd(const E* __restrict__ q, const E* __restrict__ k, const E* __restrict__ v,
    E* __restrict__ o, float* __restrict__ lse, int T, int Sfull, int D, int Hq, int Hkv, float scale, int causal,
    const void* valid, int valid64, i64* err)
{
    __shared__ float sq[ATT_BR][ATT_DMAX];
    __shared__ float sk[ATT_BC][ATT_DMAX + 1];
    __shared__ float sv[ATT_BC][ATT_DMAX];
    int S = att_keys(valid, valid64, T, Sfull, err);
    if (S < 0) return;
    int bh = blockIdx.y, b = bh / Hq, h = bh - b * Hq, hk = h / (Hq / Hkv);
    const E* Q = q + (i64)bh * T * D;
    const E* K = k + ((i64)b * Hkv + hk) * Sfull * D;
    const E* V = v + ((i64)b * Hkv + hk) * Sfull * D;
    E* O = o + (i64)bh * T * D;
    int q0 = blockIdx.x * ATT_BR, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int e = tid; e < ATT_BR * D; e += blockDim.x)
    {
        int r = e / D, c = e - r * D;
        sq[r][c] = q0 + r < T ? ld(Q, (i64)(q0 + r) * D + c) * scale : 0.f;
    }
    float acc[4][4], mrow[4], lrow[4];
#pragma unroll
    for (int rr = 0; rr < 4; rr++)
    {
        mrow[rr] = KILN_NEG_INF; lrow[rr] = 0.f;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) acc[rr][kk] = 0.f;
    }
    int kend = S;
    if (causal)
    {
        int last = min(q0 + ATT_BR, T) - 1;
        kend = min(S, last + S - T + 1);
    }
    for (int k0 = 0; k0 < kend; k0 += ATT_BC)
    {
        __syncthreads();
        for (int e = tid; e < ATT_BC * D; e += blockDim.x)
        {
            int r = e / D, c = e - r * D, j = k0 + r;
            sk[r][c] = j < S ? ld(K, (i64)j * D + c) : 0.f;
            sv[r][c] = j < S ? ld(V, (i64)j * D + c) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < 4; rr++)
        {
            int r = warp * 4 + rr, i = q0 + r, j = k0 + lane;
            if (i >= T) continue;
            float sc = 0.f;
            for (int c = 0; c < D; c++) sc += sq[r][c] * sk[lane][c];
            bool ok = j < S && (!causal || j <= i + S - T);
            sc = ok ? sc : KILN_NEG_INF;
            float nm = fmaxf(mrow[rr], warp_max(sc));
            if (nm == KILN_NEG_INF) continue;
            float p = ok ? expf(sc - nm) : 0.f;
            float alpha = mrow[rr] == KILN_NEG_INF ? 0.f : expf(mrow[rr] - nm);
            lrow[rr] = lrow[rr] * alpha + warp_sum(p);
            mrow[rr] = nm;
#pragma unroll
            for (int kk = 0; kk < 4; kk++) acc[rr][kk] *= alpha;
            for (int jj = 0; jj < ATT_BC; jj++)
            {
                float pj = __shfl_sync(KILN_FULL, p, jj);
#pragma unroll
                for (int kk = 0; kk < 4; kk++)
                {
                    int c = lane + 32 * kk;
                    if (c < D) acc[rr][kk] += pj * sv[jj][c];
                }
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < 4; rr++)
    {
        int i = q0 + warp * 4 + rr;
        if (i >= T) continue;
        float inv = lrow[rr] > 0.f ? 1.f / lrow[rr] : 0.f;
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
        {
            int c = lane + 32 * kk;
            if (c < D) st(O, (i64)i * D + c, acc[rr][kk] * inv);
        }
        if (lse && lane == 0) lse[(i64)bh * T + i] = lrow[rr] > 0.f ? mrow[rr] + logf(lrow[rr]) : KILN_NEG_INF;
    }
}
#define ATT_FWD(E, SUF) \
extern "C" __global__ void __launch_bounds__(128) attn_fwd_##SUF(const E* q, const E* k, const E* v, E* o, float* lse, int T, int Sfull, int D, \
    int Hq, int Hkv, float scale, int causal, const void* valid, int valid64, i64* err) \
{ attn_fwd<E>(q, k, v, o, lse, T, Sfull, D, Hq, Hkv, scale, causal, valid, valid64, err); }
ATT_FWD(float, f32)
ATT_FWD(bf16, bf16)
ATT_FWD(f16, f16)

// delta[row] = sum_c dO[row, c] * O[row, c]: one warp per row.
template <typename E>
__device__ __forceinline__ void attn_bwd_delta(const E* __restrict__ o, const E* __restrict__ dout, float* __restrict__ delta, i64 rows, int D)
{
    i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    float s = 0.f;
    for (int c = lane; c < D; c += 32) s += ld(o, row * D + c) * ld(dout, row * D + c);
    s = warp_sum(s);
    if (lane == 0) delta[row] = s;
}
extern "C" __global__ void attn_bwd_delta_f32(const float* o, const float* dout, float* delta, i64 rows, int D) { attn_bwd_delta<float>(o, dout, delta, rows, D); }
extern "C" __global__ void attn_bwd_delta_bf16(const bf16* o, const bf16* dout, float* delta, i64 rows, int D) { attn_bwd_delta<bf16>(o, dout, delta, rows, D); }
extern "C" __global__ void attn_bwd_delta_f16(const f16* o, const f16* dout, float* delta, i64 rows, int D) { attn_bwd_delta<f16>(o, dout, delta, rows, D); }

// The backward's fp32 gradients rounded into the packed bf16/fp16 output.
extern "C" __global__ void f32_to_bf16(const float* x, bf16* y, i64 n)
{
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) y[i] = f2bf(x[i]);
}
extern "C" __global__ void f32_to_f16(const float* x, f16* y, i64 n)
{
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) y[i] = f2h(x[i]);
}

extern "C" __global__ void fill_f32(float* x, i64 n, float value)
{
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) x[i] = value;
}

// Backward: a block owns 8 query rows (2 per warp) and walks the key tiles, recomputing p = exp(s - lse):
//   ds = p * (dO.v - delta); dq = scale * sum_j ds k_j (registers); dk_j += scale * sum_i ds q_i and
//   dv_j += sum_i p dO_i, summed over the block's rows in shared memory then added with one atomicAdd per
//   element and tile. dk and dv must be zeroed first (GQA heads of a group accumulate into the same kv head).
#define ATT_BRB 8
template <typename E>
__device__ __forceinline__ void attn_bwd(const E* __restrict__ q, const E* __restrict__ k, const E* __restrict__ v,
    const E* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ delta,
    float* __restrict__ dq, float* dk, float* dv, int T, int Sfull, int D, int Hq, int Hkv, float scale, int causal,
    const void* valid, int valid64, i64* err)
{
    __shared__ float sq[ATT_BRB][ATT_DMAX];
    __shared__ float sdo[ATT_BRB][ATT_DMAX];
    __shared__ float sk[ATT_BC][ATT_DMAX + 1];
    __shared__ float sv[ATT_BC][ATT_DMAX + 1];
    __shared__ float sp[ATT_BRB][ATT_BC];
    __shared__ float sds[ATT_BRB][ATT_BC];
    int S = att_keys(valid, valid64, T, Sfull, err);
    if (S < 0) return;
    int bh = blockIdx.y, b = bh / Hq, h = bh - b * Hq, hk = h / (Hq / Hkv);
    const E* Q = q + (i64)bh * T * D;
    const E* dO = dout + (i64)bh * T * D;
    i64 kvoff = ((i64)b * Hkv + hk) * Sfull * D;
    const E* K = k + kvoff; const E* V = v + kvoff;
    float* dK = dk + kvoff; float* dV = dv + kvoff;
    float* dQ = dq + (i64)bh * T * D;
    int q0 = blockIdx.x * ATT_BRB, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int e = tid; e < ATT_BRB * D; e += blockDim.x)
    {
        int r = e / D, c = e - r * D;
        bool in = q0 + r < T;
        sq[r][c] = in ? ld(Q, (i64)(q0 + r) * D + c) * scale : 0.f;
        sdo[r][c] = in ? ld(dO, (i64)(q0 + r) * D + c) : 0.f;
    }
    float acc[2][4], lrow[2], drow[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++)
    {
        int i = q0 + warp * 2 + rr;
        lrow[rr] = i < T ? lse[(i64)bh * T + i] : 0.f;
        drow[rr] = i < T ? delta[(i64)bh * T + i] : 0.f;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) acc[rr][kk] = 0.f;
    }
    int kend = S;
    if (causal)
    {
        int last = min(q0 + ATT_BRB, T) - 1;
        kend = min(S, last + S - T + 1);
    }
    for (int k0 = 0; k0 < kend; k0 += ATT_BC)
    {
        __syncthreads();
        for (int e = tid; e < ATT_BC * D; e += blockDim.x)
        {
            int r = e / D, c = e - r * D, j = k0 + r;
            sk[r][c] = j < S ? ld(K, (i64)j * D + c) : 0.f;
            sv[r][c] = j < S ? ld(V, (i64)j * D + c) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < 2; rr++)
        {
            int r = warp * 2 + rr, i = q0 + r, j = k0 + lane;
            float p = 0.f, ds = 0.f;
            bool ok = i < T && j < S && (!causal || j <= i + S - T);
            if (i < T)
            {
                float sc = 0.f, dp = 0.f;
                for (int c = 0; c < D; c++) { sc += sq[r][c] * sk[lane][c]; dp += sdo[r][c] * sv[lane][c]; }
                p = ok ? expf(sc - lrow[rr]) : 0.f;
                ds = p * (dp - drow[rr]);
                for (int jj = 0; jj < ATT_BC; jj++)
                {
                    float dsj = __shfl_sync(KILN_FULL, ds, jj);
#pragma unroll
                    for (int kk = 0; kk < 4; kk++)
                    {
                        int c = lane + 32 * kk;
                        if (c < D) acc[rr][kk] += dsj * sk[jj][c];
                    }
                }
            }
            sp[r][lane] = p;
            sds[r][lane] = ds;
        }
        __syncthreads();
        for (int e = tid; e < ATT_BC * D; e += blockDim.x)
        {
            int jj = e / D, c = e - jj * D, j = k0 + jj;
            if (j >= S) continue;
            float a = 0.f, bb = 0.f;
#pragma unroll
            for (int r = 0; r < ATT_BRB; r++) { a += sds[r][jj] * sq[r][c]; bb += sp[r][jj] * sdo[r][c]; }
            if (a != 0.f) atomicAdd(dK + (i64)j * D + c, a);
            if (bb != 0.f) atomicAdd(dV + (i64)j * D + c, bb);
        }
    }
#pragma unroll
    for (int rr = 0; rr < 2; rr++)
    {
        int i = q0 + warp * 2 + rr;
        if (i >= T) continue;
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
        {
            int c = lane + 32 * kk;
            if (c < D) dQ[(i64)i * D + c] = acc[rr][kk] * scale;
        }
    }
}
#define ATT_BWD(E, SUF) \
extern "C" __global__ void __launch_bounds__(128) attn_bwd_##SUF(const E* q, const E* k, const E* v, const E* dout, const float* lse, \
    const float* delta, float* dq, float* dk, float* dv, int T, int Sfull, int D, int Hq, int Hkv, float scale, int causal, \
    const void* valid, int valid64, i64* err) \
{ attn_bwd<E>(q, k, v, dout, lse, delta, dq, dk, dv, T, Sfull, D, Hq, Hkv, scale, causal, valid, valid64, err); }
ATT_BWD(float, f32)
ATT_BWD(bf16, bf16)
ATT_BWD(f16, f16)
