// Shared by every Kiln kernel module: prepended to each .cu source by CudaKernels (NVRTC has no headers, so
// no header is included). bf16 is stored as unsigned short, fp16 as a one-field struct (a distinct type, so the
// ld/st overloads below can tell the two 16-bit formats apart); math is fp32.
typedef unsigned short bf16;
struct alignas(2) f16 { unsigned short bits; };
typedef long long i64;
#define KILN_NEG_INF __int_as_float(0xff800000)
#define KILN_FULL 0xffffffffu

struct alignas(16) kf4 { float x, y, z, w; };
struct alignas(8) ku2 { unsigned x, y; };

__device__ __forceinline__ float bf2f(bf16 h) { return __uint_as_float(((unsigned)h) << 16); }
// Round to nearest even; NaN stays a (quiet) NaN.
__device__ __forceinline__ bf16 f2bf(float f)
{
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

__device__ __forceinline__ float h2f(f16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits)); return f; }
__device__ __forceinline__ f16 f2h(float f) { f16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f)); return h; }

__device__ __forceinline__ float ld(const float* p, i64 i) { return p[i]; }
__device__ __forceinline__ float ld(const f16* p, i64 i) { return h2f(p[i]); }
__device__ __forceinline__ void st(f16* p, i64 i, float v) { p[i] = f2h(v); }
__device__ __forceinline__ float ld(const bf16* p, i64 i) { return bf2f(p[i]); }
__device__ __forceinline__ void st(float* p, i64 i, float v) { p[i] = v; }
__device__ __forceinline__ void st(bf16* p, i64 i, float v) { p[i] = f2bf(v); }

// Four consecutive elements (16 bytes of fp32, 8 of bf16); i must be a multiple of 4 and the row aligned.
__device__ __forceinline__ kf4 ld4(const float* p, i64 i) { return *reinterpret_cast<const kf4*>(p + i); }
__device__ __forceinline__ kf4 ld4(const bf16* p, i64 i)
{
    ku2 u = *reinterpret_cast<const ku2*>(p + i);
    kf4 r;
    r.x = __uint_as_float(u.x << 16); r.y = __uint_as_float(u.x & 0xffff0000u);
    r.z = __uint_as_float(u.y << 16); r.w = __uint_as_float(u.y & 0xffff0000u);
    return r;
}
__device__ __forceinline__ kf4 ld4(const f16* p, i64 i)
{
    ku2 u = *reinterpret_cast<const ku2*>(p + i);
    kf4 r;
    r.x = h2f(f16{(unsigned short)(u.x & 0xffffu)}); r.y = h2f(f16{(unsigned short)(u.x >> 16)});
    r.z = h2f(f16{(unsigned short)(u.y & 0xffffu)}); r.w = h2f(f16{(unsigned short)(u.y >> 16)});
    return r;
}
__device__ __forceinline__ void st4(f16* p, i64 i, kf4 v)
{
    ku2 u;
    u.x = (unsigned)f2h(v.x).bits | ((unsigned)f2h(v.y).bits << 16);
    u.y = (unsigned)f2h(v.z).bits | ((unsigned)f2h(v.w).bits << 16);
    *reinterpret_cast<ku2*>(p + i) = u;
}
__device__ __forceinline__ void st4(float* p, i64 i, kf4 v) { *reinterpret_cast<kf4*>(p + i) = v; }
__device__ __forceinline__ void st4(bf16* p, i64 i, kf4 v)
{
    ku2 u;
    u.x = (unsigned)f2bf(v.x) | ((unsigned)f2bf(v.y) << 16);
    u.y = (unsigned)f2bf(v.z) | ((unsigned)f2bf(v.w) << 16);
    *reinterpret_cast<ku2*>(p + i) = u;
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(KILN_FULL, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(KILN_FULL, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(KILN_FULL, v, o));
    return v;
}

// Block-wide sums (blockDim.x a multiple of 32); every thread gets the result. sh: 64 floats of shared memory.
// One value per block: each warp reduces, warp leaders meet in shared memory, the first warp reduces those.
// Every thread gets the result. `sh` holds at least 32 floats; `none` is the operation's identity.
template <typename Warp>
__device__ __forceinline__ float block_reduce(float v, float* sh, Warp warp, float none)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : none;
    return warp(v);
}
struct kiln_warp_sum { __device__ __forceinline__ float operator()(float v) const { return warp_sum(v); } };
struct kiln_warp_max { __device__ __forceinline__ float operator()(float v) const { return warp_max(v); } };
__device__ __forceinline__ float block_sum(float v, float* sh) { return block_reduce(v, sh, kiln_warp_sum(), 0.f); }
__device__ __forceinline__ float block_max(float v, float* sh) { return block_reduce(v, sh, kiln_warp_max(), KILN_NEG_INF); }
__device__ __forceinline__ void block_sum2(float& a, float& b, float* sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    a = warp_sum(a); b = warp_sum(b);
    __syncthreads();
    if (lane == 0) { sh[w] = a; sh[32 + w] = b; }
    __syncthreads();
    a = lane < nw ? sh[lane] : 0.f;
    b = lane < nw ? sh[32 + lane] : 0.f;
    a = warp_sum(a); b = warp_sum(b);
}

// Online softmax statistics: running max m and sum s of exp(x - m).
__device__ __forceinline__ void online_add(float& m, float& s, float v)
{
    if (v > m) { s = s * expf(m - v) + 1.f; m = v; }
    else if (v > KILN_NEG_INF) s += expf(v - m);
}
__device__ __forceinline__ void online_merge(float& m, float& s, float om, float os)
{
    float nm = fmaxf(m, om);
    if (nm == KILN_NEG_INF) { m = nm; s = 0.f; return; }
    s = (m == KILN_NEG_INF ? 0.f : s * expf(m - nm)) + (om == KILN_NEG_INF ? 0.f : os * expf(om - nm));
    m = nm;
}
__device__ __forceinline__ void block_online(float& m, float& s, float* sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
    {
        float om = __shfl_xor_sync(KILN_FULL, m, o), os = __shfl_xor_sync(KILN_FULL, s, o);
        online_merge(m, s, om, os);
    }
    __syncthreads();
    if (lane == 0) { sh[w] = m; sh[32 + w] = s; }
    __syncthreads();
    m = lane < nw ? sh[lane] : KILN_NEG_INF;
    s = lane < nw ? sh[32 + lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1)
    {
        float om = __shfl_xor_sync(KILN_FULL, m, o), os = __shfl_xor_sync(KILN_FULL, s, o);
        online_merge(m, s, om, os);
    }
}
