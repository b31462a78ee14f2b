// GemmKernels.cs: the register-tiled micro-kernels behind Kiln.Cpu.Gemm (see Gemm.cs for the
// blocking driver and the packed panel layout).
//
// A kernel computes one MR x NR tile of C from a packed A panel (kc steps of MR values) and a
// packed B panel (kc steps of NR values, 64-byte aligned):
//     C[r, q] = alpha * sum_k a[k * MR + r] * b[k * NR + q] + beta * C[r, q]    (C not read when beta == 0)
// keeping the whole tile in vector registers: per k step it loads NR / lanes vectors of B,
// broadcasts each of the MR values of A once, and issues MR * NR / lanes fused multiply-adds.
//
// Tile shapes. The accumulators must fit the register file with room for the B vectors and one
// broadcast, and there must be at least (FMA latency x FMA ports) = 8 independent accumulators
// to keep both FMA pipes busy. With AVX-512 (32 registers) 8 x 32 float / 8 x 16 double uses
// 16 accumulators; 6 x 32, 12 x 32, 14 x 32, 8 x 48 and 4 x 64 all measured the same at
// n >= 512 on Zen 5 (about 90 % of the FMA peak on one core), and 8 rows won at the small,
// power-of-two sizes common in models (M = 32..256) because no padded rows are computed.
// With AVX2 (16 registers) the classic 6 x 16 / 6 x 8 shape uses 12 accumulators + 2 B + 1
// broadcast. The Vector128 kernels (ARM64 NEON, or x64 without AVX2) use the same 12
// accumulators and MultiplyAddEstimate, which is a real FMA where the hardware has one.
//
// Blocking: KC = 256 keeps a kc x NR panel of B (32 KB for AVX-512 float) in the 48 KB L1
// while A panels stream past it; MC = 480 rows keep an MC x kc block of packed A (480 KB) in
// the 1 MB L2. KC in 192..512 and MC in 240..960 were within noise of each other.
//
// The C tile is prefetched first: its rows are ldc apart, which the hardware prefetchers
// do not follow, and the tile is only touched after the k loop.
//
// The kernels are written out in full (one line per tile row) rather than looped, so the JIT
// keeps every accumulator in a register; the disassembly of the AVX-512 loop is 2 loads, 8
// broadcasts and 16 FMAs per k step, with no spills.

using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Cpu;

/// <summary>A GEMM micro-kernel and its blocking parameters (static abstract so the driver,
/// instantiated per kernel struct, gets every call and constant inlined).</summary>
internal unsafe interface IGemmKernel<T> where T : unmanaged
{
    /// <summary>Rows of the C tile (values of A broadcast per k step).</summary>
    static abstract int MR { get; }
    /// <summary>Columns of the C tile (a whole number of vectors of B per k step).</summary>
    static abstract int NR { get; }
    /// <summary>Longest K slice packed at once.</summary>
    static abstract int KC { get; }
    /// <summary>Rows of packed A a thread sweeps before moving to the next B panel (multiple of MR).</summary>
    static abstract int MC { get; }
    /// <summary>C[0..MR, 0..NR] (row stride ldc) = alpha * (packed A panel x packed B panel) + beta * C.</summary>
    static abstract void Run(nint kc, T* a, T* b, T* c, nint ldc, T alpha, T beta);
}

/// <summary>AVX-512 float: 8 x 32 tile (8 x 2 zmm accumulators).</summary>
internal unsafe struct SgemmKernelAvx512 : IGemmKernel<float>
{
    public static int MR => 8;
    public static int NR => 32;
    public static int KC => 256;
    public static int MC => 480;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(nint kc, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        if (Sse.IsSupported)
            for (nint r = 0; r < 8; r++) { Sse.Prefetch0(c + r * ldc); Sse.Prefetch0(c + r * ldc + 31); }

        Vector512<float> c00 = default, c01 = default;
        Vector512<float> c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default;
        Vector512<float> c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default;
        Vector512<float> c70 = default, c71 = default;
        for (nint k = 0; k < kc; k++, a += 8, b += 32)
        {
            Vector512<float> b0 = Vector512.LoadAligned(b + 0); Vector512<float> b1 = Vector512.LoadAligned(b + 16);
            Vector512<float> ar;
            ar = Vector512.Create(a[0]); c00 = Vector512.FusedMultiplyAdd(ar, b0, c00); c01 = Vector512.FusedMultiplyAdd(ar, b1, c01);
            ar = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(ar, b0, c10); c11 = Vector512.FusedMultiplyAdd(ar, b1, c11);
            ar = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(ar, b0, c20); c21 = Vector512.FusedMultiplyAdd(ar, b1, c21);
            ar = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(ar, b0, c30); c31 = Vector512.FusedMultiplyAdd(ar, b1, c31);
            ar = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(ar, b0, c40); c41 = Vector512.FusedMultiplyAdd(ar, b1, c41);
            ar = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(ar, b0, c50); c51 = Vector512.FusedMultiplyAdd(ar, b1, c51);
            ar = Vector512.Create(a[6]); c60 = Vector512.FusedMultiplyAdd(ar, b0, c60); c61 = Vector512.FusedMultiplyAdd(ar, b1, c61);
            ar = Vector512.Create(a[7]); c70 = Vector512.FusedMultiplyAdd(ar, b0, c70); c71 = Vector512.FusedMultiplyAdd(ar, b1, c71);
        }

        Vector512<float> va = Vector512.Create(alpha);
        if (beta == 0)
        {
            (va * c00).Store(c + 0); (va * c01).Store(c + 16); c += ldc;
            (va * c10).Store(c + 0); (va * c11).Store(c + 16); c += ldc;
            (va * c20).Store(c + 0); (va * c21).Store(c + 16); c += ldc;
            (va * c30).Store(c + 0); (va * c31).Store(c + 16); c += ldc;
            (va * c40).Store(c + 0); (va * c41).Store(c + 16); c += ldc;
            (va * c50).Store(c + 0); (va * c51).Store(c + 16); c += ldc;
            (va * c60).Store(c + 0); (va * c61).Store(c + 16); c += ldc;
            (va * c70).Store(c + 0); (va * c71).Store(c + 16);
        }
        else
        {
            Vector512<float> vb = Vector512.Create(beta);
            Vector512.FusedMultiplyAdd(c00, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c01, va, vb * Vector512.Load(c + 16)).Store(c + 16); c += ldc;
            Vector512.FusedMultiplyAdd(c10, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c11, va, vb * Vector512.Load(c + 16)).Store(c + 16); c += ldc;
            Vector512.FusedMultiplyAdd(c20, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c21, va, vb * Vector512.Load(c + 16)).Store(c + 16); c += ldc;
            Vector512.FusedMultiplyAdd(c30, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c31, va, vb * Vector512.Load(c + 16)).Store(c + 16); c += ldc;
            Vector512.FusedMultiplyAdd(c40, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c41, va, vb * Vector512.Load(c + 16)).Store(c + 16); c += ldc;
            Vector512.FusedMultiplyAdd(c50, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c51, va, vb * Vector512.Load(c + 16)).Store(c + 16); c += ldc;
            Vector512.FusedMultiplyAdd(c60, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c61, va, vb * Vector512.Load(c + 16)).Store(c + 16); c += ldc;
            Vector512.FusedMultiplyAdd(c70, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c71, va, vb * Vector512.Load(c + 16)).Store(c + 16);
        }
    }
}

/// <summary>AVX-512 double: 8 x 16 tile (8 x 2 zmm accumulators).</summary>
internal unsafe struct DgemmKernelAvx512 : IGemmKernel<double>
{
    public static int MR => 8;
    public static int NR => 16;
    public static int KC => 256;
    public static int MC => 480;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(nint kc, double* a, double* b, double* c, nint ldc, double alpha, double beta)
    {
        if (Sse.IsSupported)
            for (nint r = 0; r < 8; r++) { Sse.Prefetch0(c + r * ldc); Sse.Prefetch0(c + r * ldc + 15); }

        Vector512<double> c00 = default, c01 = default;
        Vector512<double> c10 = default, c11 = default;
        Vector512<double> c20 = default, c21 = default;
        Vector512<double> c30 = default, c31 = default;
        Vector512<double> c40 = default, c41 = default;
        Vector512<double> c50 = default, c51 = default;
        Vector512<double> c60 = default, c61 = default;
        Vector512<double> c70 = default, c71 = default;
        for (nint k = 0; k < kc; k++, a += 8, b += 16)
        {
            Vector512<double> b0 = Vector512.LoadAligned(b + 0); Vector512<double> b1 = Vector512.LoadAligned(b + 8);
            Vector512<double> ar;
            ar = Vector512.Create(a[0]); c00 = Vector512.FusedMultiplyAdd(ar, b0, c00); c01 = Vector512.FusedMultiplyAdd(ar, b1, c01);
            ar = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(ar, b0, c10); c11 = Vector512.FusedMultiplyAdd(ar, b1, c11);
            ar = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(ar, b0, c20); c21 = Vector512.FusedMultiplyAdd(ar, b1, c21);
            ar = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(ar, b0, c30); c31 = Vector512.FusedMultiplyAdd(ar, b1, c31);
            ar = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(ar, b0, c40); c41 = Vector512.FusedMultiplyAdd(ar, b1, c41);
            ar = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(ar, b0, c50); c51 = Vector512.FusedMultiplyAdd(ar, b1, c51);
            ar = Vector512.Create(a[6]); c60 = Vector512.FusedMultiplyAdd(ar, b0, c60); c61 = Vector512.FusedMultiplyAdd(ar, b1, c61);
            ar = Vector512.Create(a[7]); c70 = Vector512.FusedMultiplyAdd(ar, b0, c70); c71 = Vector512.FusedMultiplyAdd(ar, b1, c71);
        }

        Vector512<double> va = Vector512.Create(alpha);
        if (beta == 0)
        {
            (va * c00).Store(c + 0); (va * c01).Store(c + 8); c += ldc;
            (va * c10).Store(c + 0); (va * c11).Store(c + 8); c += ldc;
            (va * c20).Store(c + 0); (va * c21).Store(c + 8); c += ldc;
            (va * c30).Store(c + 0); (va * c31).Store(c + 8); c += ldc;
            (va * c40).Store(c + 0); (va * c41).Store(c + 8); c += ldc;
            (va * c50).Store(c + 0); (va * c51).Store(c + 8); c += ldc;
            (va * c60).Store(c + 0); (va * c61).Store(c + 8); c += ldc;
            (va * c70).Store(c + 0); (va * c71).Store(c + 8);
        }
        else
        {
            Vector512<double> vb = Vector512.Create(beta);
            Vector512.FusedMultiplyAdd(c00, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c01, va, vb * Vector512.Load(c + 8)).Store(c + 8); c += ldc;
            Vector512.FusedMultiplyAdd(c10, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c11, va, vb * Vector512.Load(c + 8)).Store(c + 8); c += ldc;
            Vector512.FusedMultiplyAdd(c20, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c21, va, vb * Vector512.Load(c + 8)).Store(c + 8); c += ldc;
            Vector512.FusedMultiplyAdd(c30, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c31, va, vb * Vector512.Load(c + 8)).Store(c + 8); c += ldc;
            Vector512.FusedMultiplyAdd(c40, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c41, va, vb * Vector512.Load(c + 8)).Store(c + 8); c += ldc;
            Vector512.FusedMultiplyAdd(c50, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c51, va, vb * Vector512.Load(c + 8)).Store(c + 8); c += ldc;
            Vector512.FusedMultiplyAdd(c60, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c61, va, vb * Vector512.Load(c + 8)).Store(c + 8); c += ldc;
            Vector512.FusedMultiplyAdd(c70, va, vb * Vector512.Load(c + 0)).Store(c + 0); Vector512.FusedMultiplyAdd(c71, va, vb * Vector512.Load(c + 8)).Store(c + 8);
        }
    }
}

/// <summary>AVX2 + FMA float: 6 x 16 tile (6 x 2 ymm accumulators).</summary>
internal unsafe struct SgemmKernelAvx2 : IGemmKernel<float>
{
    public static int MR => 6;
    public static int NR => 16;
    public static int KC => 256;
    public static int MC => 480;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(nint kc, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        if (Sse.IsSupported)
            for (nint r = 0; r < 6; r++) { Sse.Prefetch0(c + r * ldc); Sse.Prefetch0(c + r * ldc + 15); }

        Vector256<float> c00 = default, c01 = default;
        Vector256<float> c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default;
        Vector256<float> c40 = default, c41 = default;
        Vector256<float> c50 = default, c51 = default;
        for (nint k = 0; k < kc; k++, a += 6, b += 16)
        {
            Vector256<float> b0 = Vector256.LoadAligned(b + 0); Vector256<float> b1 = Vector256.LoadAligned(b + 8);
            Vector256<float> ar;
            ar = Vector256.Create(a[0]); c00 = Vector256.FusedMultiplyAdd(ar, b0, c00); c01 = Vector256.FusedMultiplyAdd(ar, b1, c01);
            ar = Vector256.Create(a[1]); c10 = Vector256.FusedMultiplyAdd(ar, b0, c10); c11 = Vector256.FusedMultiplyAdd(ar, b1, c11);
            ar = Vector256.Create(a[2]); c20 = Vector256.FusedMultiplyAdd(ar, b0, c20); c21 = Vector256.FusedMultiplyAdd(ar, b1, c21);
            ar = Vector256.Create(a[3]); c30 = Vector256.FusedMultiplyAdd(ar, b0, c30); c31 = Vector256.FusedMultiplyAdd(ar, b1, c31);
            ar = Vector256.Create(a[4]); c40 = Vector256.FusedMultiplyAdd(ar, b0, c40); c41 = Vector256.FusedMultiplyAdd(ar, b1, c41);
            ar = Vector256.Create(a[5]); c50 = Vector256.FusedMultiplyAdd(ar, b0, c50); c51 = Vector256.FusedMultiplyAdd(ar, b1, c51);
        }

        Vector256<float> va = Vector256.Create(alpha);
        if (beta == 0)
        {
            (va * c00).Store(c + 0); (va * c01).Store(c + 8); c += ldc;
            (va * c10).Store(c + 0); (va * c11).Store(c + 8); c += ldc;
            (va * c20).Store(c + 0); (va * c21).Store(c + 8); c += ldc;
            (va * c30).Store(c + 0); (va * c31).Store(c + 8); c += ldc;
            (va * c40).Store(c + 0); (va * c41).Store(c + 8); c += ldc;
            (va * c50).Store(c + 0); (va * c51).Store(c + 8);
        }
        else
        {
            Vector256<float> vb = Vector256.Create(beta);
            Vector256.FusedMultiplyAdd(c00, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c01, va, vb * Vector256.Load(c + 8)).Store(c + 8); c += ldc;
            Vector256.FusedMultiplyAdd(c10, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c11, va, vb * Vector256.Load(c + 8)).Store(c + 8); c += ldc;
            Vector256.FusedMultiplyAdd(c20, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c21, va, vb * Vector256.Load(c + 8)).Store(c + 8); c += ldc;
            Vector256.FusedMultiplyAdd(c30, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c31, va, vb * Vector256.Load(c + 8)).Store(c + 8); c += ldc;
            Vector256.FusedMultiplyAdd(c40, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c41, va, vb * Vector256.Load(c + 8)).Store(c + 8); c += ldc;
            Vector256.FusedMultiplyAdd(c50, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c51, va, vb * Vector256.Load(c + 8)).Store(c + 8);
        }
    }
}

/// <summary>AVX2 + FMA double: 6 x 8 tile (6 x 2 ymm accumulators).</summary>
internal unsafe struct DgemmKernelAvx2 : IGemmKernel<double>
{
    public static int MR => 6;
    public static int NR => 8;
    public static int KC => 256;
    public static int MC => 480;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(nint kc, double* a, double* b, double* c, nint ldc, double alpha, double beta)
    {
        if (Sse.IsSupported)
            for (nint r = 0; r < 6; r++) { Sse.Prefetch0(c + r * ldc); Sse.Prefetch0(c + r * ldc + 7); }

        Vector256<double> c00 = default, c01 = default;
        Vector256<double> c10 = default, c11 = default;
        Vector256<double> c20 = default, c21 = default;
        Vector256<double> c30 = default, c31 = default;
        Vector256<double> c40 = default, c41 = default;
        Vector256<double> c50 = default, c51 = default;
        for (nint k = 0; k < kc; k++, a += 6, b += 8)
        {
            Vector256<double> b0 = Vector256.LoadAligned(b + 0); Vector256<double> b1 = Vector256.LoadAligned(b + 4);
            Vector256<double> ar;
            ar = Vector256.Create(a[0]); c00 = Vector256.FusedMultiplyAdd(ar, b0, c00); c01 = Vector256.FusedMultiplyAdd(ar, b1, c01);
            ar = Vector256.Create(a[1]); c10 = Vector256.FusedMultiplyAdd(ar, b0, c10); c11 = Vector256.FusedMultiplyAdd(ar, b1, c11);
            ar = Vector256.Create(a[2]); c20 = Vector256.FusedMultiplyAdd(ar, b0, c20); c21 = Vector256.FusedMultiplyAdd(ar, b1, c21);
            ar = Vector256.Create(a[3]); c30 = Vector256.FusedMultiplyAdd(ar, b0, c30); c31 = Vector256.FusedMultiplyAdd(ar, b1, c31);
            ar = Vector256.Create(a[4]); c40 = Vector256.FusedMultiplyAdd(ar, b0, c40); c41 = Vector256.FusedMultiplyAdd(ar, b1, c41);
            ar = Vector256.Create(a[5]); c50 = Vector256.FusedMultiplyAdd(ar, b0, c50); c51 = Vector256.FusedMultiplyAdd(ar, b1, c51);
        }

        Vector256<double> va = Vector256.Create(alpha);
        if (beta == 0)
        {
            (va * c00).Store(c + 0); (va * c01).Store(c + 4); c += ldc;
            (va * c10).Store(c + 0); (va * c11).Store(c + 4); c += ldc;
            (va * c20).Store(c + 0); (va * c21).Store(c + 4); c += ldc;
            (va * c30).Store(c + 0); (va * c31).Store(c + 4); c += ldc;
            (va * c40).Store(c + 0); (va * c41).Store(c + 4); c += ldc;
            (va * c50).Store(c + 0); (va * c51).Store(c + 4);
        }
        else
        {
            Vector256<double> vb = Vector256.Create(beta);
            Vector256.FusedMultiplyAdd(c00, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c01, va, vb * Vector256.Load(c + 4)).Store(c + 4); c += ldc;
            Vector256.FusedMultiplyAdd(c10, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c11, va, vb * Vector256.Load(c + 4)).Store(c + 4); c += ldc;
            Vector256.FusedMultiplyAdd(c20, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c21, va, vb * Vector256.Load(c + 4)).Store(c + 4); c += ldc;
            Vector256.FusedMultiplyAdd(c30, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c31, va, vb * Vector256.Load(c + 4)).Store(c + 4); c += ldc;
            Vector256.FusedMultiplyAdd(c40, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c41, va, vb * Vector256.Load(c + 4)).Store(c + 4); c += ldc;
            Vector256.FusedMultiplyAdd(c50, va, vb * Vector256.Load(c + 0)).Store(c + 0); Vector256.FusedMultiplyAdd(c51, va, vb * Vector256.Load(c + 4)).Store(c + 4);
        }
    }
}

/// <summary>128-bit float: 6 x 8 tile (6 x 2 accumulators).</summary>
internal unsafe struct SgemmKernelVector128 : IGemmKernel<float>
{
    public static int MR => 6;
    public static int NR => 8;
    public static int KC => 256;
    public static int MC => 480;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(nint kc, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        if (Sse.IsSupported)
            for (nint r = 0; r < 6; r++) { Sse.Prefetch0(c + r * ldc); Sse.Prefetch0(c + r * ldc + 7); }

        Vector128<float> c00 = default, c01 = default;
        Vector128<float> c10 = default, c11 = default;
        Vector128<float> c20 = default, c21 = default;
        Vector128<float> c30 = default, c31 = default;
        Vector128<float> c40 = default, c41 = default;
        Vector128<float> c50 = default, c51 = default;
        for (nint k = 0; k < kc; k++, a += 6, b += 8)
        {
            Vector128<float> b0 = Vector128.LoadAligned(b + 0); Vector128<float> b1 = Vector128.LoadAligned(b + 4);
            Vector128<float> ar;
            ar = Vector128.Create(a[0]); c00 = Vector128.MultiplyAddEstimate(ar, b0, c00); c01 = Vector128.MultiplyAddEstimate(ar, b1, c01);
            ar = Vector128.Create(a[1]); c10 = Vector128.MultiplyAddEstimate(ar, b0, c10); c11 = Vector128.MultiplyAddEstimate(ar, b1, c11);
            ar = Vector128.Create(a[2]); c20 = Vector128.MultiplyAddEstimate(ar, b0, c20); c21 = Vector128.MultiplyAddEstimate(ar, b1, c21);
            ar = Vector128.Create(a[3]); c30 = Vector128.MultiplyAddEstimate(ar, b0, c30); c31 = Vector128.MultiplyAddEstimate(ar, b1, c31);
            ar = Vector128.Create(a[4]); c40 = Vector128.MultiplyAddEstimate(ar, b0, c40); c41 = Vector128.MultiplyAddEstimate(ar, b1, c41);
            ar = Vector128.Create(a[5]); c50 = Vector128.MultiplyAddEstimate(ar, b0, c50); c51 = Vector128.MultiplyAddEstimate(ar, b1, c51);
        }

        Vector128<float> va = Vector128.Create(alpha);
        if (beta == 0)
        {
            (va * c00).Store(c + 0); (va * c01).Store(c + 4); c += ldc;
            (va * c10).Store(c + 0); (va * c11).Store(c + 4); c += ldc;
            (va * c20).Store(c + 0); (va * c21).Store(c + 4); c += ldc;
            (va * c30).Store(c + 0); (va * c31).Store(c + 4); c += ldc;
            (va * c40).Store(c + 0); (va * c41).Store(c + 4); c += ldc;
            (va * c50).Store(c + 0); (va * c51).Store(c + 4);
        }
        else
        {
            Vector128<float> vb = Vector128.Create(beta);
            Vector128.MultiplyAddEstimate(c00, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c01, va, vb * Vector128.Load(c + 4)).Store(c + 4); c += ldc;
            Vector128.MultiplyAddEstimate(c10, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c11, va, vb * Vector128.Load(c + 4)).Store(c + 4); c += ldc;
            Vector128.MultiplyAddEstimate(c20, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c21, va, vb * Vector128.Load(c + 4)).Store(c + 4); c += ldc;
            Vector128.MultiplyAddEstimate(c30, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c31, va, vb * Vector128.Load(c + 4)).Store(c + 4); c += ldc;
            Vector128.MultiplyAddEstimate(c40, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c41, va, vb * Vector128.Load(c + 4)).Store(c + 4); c += ldc;
            Vector128.MultiplyAddEstimate(c50, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c51, va, vb * Vector128.Load(c + 4)).Store(c + 4);
        }
    }
}

/// <summary>128-bit double: 6 x 4 tile (6 x 2 accumulators).</summary>
internal unsafe struct DgemmKernelVector128 : IGemmKernel<double>
{
    public static int MR => 6;
    public static int NR => 4;
    public static int KC => 256;
    public static int MC => 480;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(nint kc, double* a, double* b, double* c, nint ldc, double alpha, double beta)
    {
        if (Sse.IsSupported)
            for (nint r = 0; r < 6; r++) { Sse.Prefetch0(c + r * ldc); Sse.Prefetch0(c + r * ldc + 3); }

        Vector128<double> c00 = default, c01 = default;
        Vector128<double> c10 = default, c11 = default;
        Vector128<double> c20 = default, c21 = default;
        Vector128<double> c30 = default, c31 = default;
        Vector128<double> c40 = default, c41 = default;
        Vector128<double> c50 = default, c51 = default;
        for (nint k = 0; k < kc; k++, a += 6, b += 4)
        {
            Vector128<double> b0 = Vector128.LoadAligned(b + 0); Vector128<double> b1 = Vector128.LoadAligned(b + 2);
            Vector128<double> ar;
            ar = Vector128.Create(a[0]); c00 = Vector128.MultiplyAddEstimate(ar, b0, c00); c01 = Vector128.MultiplyAddEstimate(ar, b1, c01);
            ar = Vector128.Create(a[1]); c10 = Vector128.MultiplyAddEstimate(ar, b0, c10); c11 = Vector128.MultiplyAddEstimate(ar, b1, c11);
            ar = Vector128.Create(a[2]); c20 = Vector128.MultiplyAddEstimate(ar, b0, c20); c21 = Vector128.MultiplyAddEstimate(ar, b1, c21);
            ar = Vector128.Create(a[3]); c30 = Vector128.MultiplyAddEstimate(ar, b0, c30); c31 = Vector128.MultiplyAddEstimate(ar, b1, c31);
            ar = Vector128.Create(a[4]); c40 = Vector128.MultiplyAddEstimate(ar, b0, c40); c41 = Vector128.MultiplyAddEstimate(ar, b1, c41);
            ar = Vector128.Create(a[5]); c50 = Vector128.MultiplyAddEstimate(ar, b0, c50); c51 = Vector128.MultiplyAddEstimate(ar, b1, c51);
        }

        Vector128<double> va = Vector128.Create(alpha);
        if (beta == 0)
        {
            (va * c00).Store(c + 0); (va * c01).Store(c + 2); c += ldc;
            (va * c10).Store(c + 0); (va * c11).Store(c + 2); c += ldc;
            (va * c20).Store(c + 0); (va * c21).Store(c + 2); c += ldc;
            (va * c30).Store(c + 0); (va * c31).Store(c + 2); c += ldc;
            (va * c40).Store(c + 0); (va * c41).Store(c + 2); c += ldc;
            (va * c50).Store(c + 0); (va * c51).Store(c + 2);
        }
        else
        {
            Vector128<double> vb = Vector128.Create(beta);
            Vector128.MultiplyAddEstimate(c00, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c01, va, vb * Vector128.Load(c + 2)).Store(c + 2); c += ldc;
            Vector128.MultiplyAddEstimate(c10, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c11, va, vb * Vector128.Load(c + 2)).Store(c + 2); c += ldc;
            Vector128.MultiplyAddEstimate(c20, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c21, va, vb * Vector128.Load(c + 2)).Store(c + 2); c += ldc;
            Vector128.MultiplyAddEstimate(c30, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c31, va, vb * Vector128.Load(c + 2)).Store(c + 2); c += ldc;
            Vector128.MultiplyAddEstimate(c40, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c41, va, vb * Vector128.Load(c + 2)).Store(c + 2); c += ldc;
            Vector128.MultiplyAddEstimate(c50, va, vb * Vector128.Load(c + 0)).Store(c + 0); Vector128.MultiplyAddEstimate(c51, va, vb * Vector128.Load(c + 2)).Store(c + 2);
        }
    }
}

/// <summary>Portable fallback for hardware without usable SIMD: a 4 x 4 tile in scalar locals.</summary>
internal unsafe struct GemmKernelScalar<T> : IGemmKernel<T> where T : unmanaged, INumber<T>
{
    public static int MR => 4;
    public static int NR => 4;
    public static int KC => 256;
    public static int MC => 128;

    public static void Run(nint kc, T* a, T* b, T* c, nint ldc, T alpha, T beta)
    {
        T* acc = stackalloc T[16];
        new Span<T>(acc, 16).Clear();
        for (nint k = 0; k < kc; k++, a += 4, b += 4)
        {
            for (int r = 0; r < 4; r++)
            {
                T ar = a[r];
                T* row = acc + r * 4;
                row[0] += ar * b[0]; row[1] += ar * b[1]; row[2] += ar * b[2]; row[3] += ar * b[3];
            }
        }
        for (int r = 0; r < 4; r++, c += ldc)
            for (int q = 0; q < 4; q++)
                c[q] = beta == T.Zero ? alpha * acc[r * 4 + q] : alpha * acc[r * 4 + q] + beta * c[q];
    }
}
