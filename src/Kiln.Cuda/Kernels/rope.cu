// Rotary position embedding over the last axis (size d, even) of rows laid out [..., seq, d]: row r is at
// position (r % seq) + offset. Interleaved rotates pairs (2i, 2i+1); half-split rotates (i, i + d/2).
// Frequency theta^(-2i/d); the angle is computed in double (as Kiln.Cpu.ModelKernels.Rope). inverse != 0
// rotates by the negative angle (the backward). In place (x == y) is allowed. offp (may be null; int32 or int64
// by off64) replaces offset with a device value: a decode step's position needs no host read, so the step can be
// replayed from a CUDA graph.
template <typename T>
__device__ __forceinline__ void rope(const T* x, T* y, i64 rows, int seq, int d, double theta, int offset, int interleaved, int inverse,
    const void* offp, int off64)
{
    if (offp) offset = off64 ? (int)*(const i64*)offp : *(const int*)offp;
    int half = d / 2;
    i64 total = rows * half;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x)
    {
        i64 r = e / half;
        int i = (int)(e - r * half);
        int p = (int)(r % seq) + offset;
        double ang = (double)p * pow(theta, -2.0 * i / d);
        double sd, cd;
        sincos(ang, &sd, &cd);
        float c = (float)cd, s = inverse ? -(float)sd : (float)sd;
        i64 base = r * d;
        i64 i0 = base + (interleaved ? 2 * i : i), i1 = base + (interleaved ? 2 * i + 1 : i + half);
        float a = ld(x, i0), b = ld(x, i1);
        st(y, i0, a * c - b * s);
        st(y, i1, a * s + b * c);
    }
}
extern "C" __global__ void rope_f32(const float* x, float* y, i64 rows, int seq, int d, double theta, int offset, int interleaved, int inverse,
    const void* offp, int off64)
{ rope<float>(x, y, rows, seq, d, theta, offset, interleaved, inverse, offp, off64); }
extern "C" __global__ void rope_bf16(const bf16* x, bf16* y, i64 rows, int seq, int d, double theta, int offset, int interleaved, int inverse,
    const void* offp, int off64)
{ rope<bf16>(x, y, rows, seq, d, theta, offset, interleaved, inverse, offp, off64); }
extern "C" __global__ void rope_f16(const f16* x, f16* y, i64 rows, int seq, int d, double theta, int offset, int interleaved, int inverse,
    const void* offp, int off64)
{ rope<f16>(x, y, rows, seq, d, theta, offset, interleaved, inverse, offp, off64); }
