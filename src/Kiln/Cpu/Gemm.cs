// Gemm.cs: single- and double-precision matrix multiply for the CPU backend.
//
//   C[m, n] = alpha * sum_k A[m, k] * B[k, n] + beta * C[m, n]
//
// This file holds the entry points (Sgemm, Dgemm), the GotoBLAS/BLIS style blocking driver,
// the operand packing routines and the pooled pack buffers. The register-tiled micro-kernels
// live in GemmKernels.cs.
//
// Blocking. K is cut into equal slices of at most KC (about 256) so that one kc x NR panel
// of packed B stays in L1 while the micro-kernel streams MR x kc panels of packed A past it;
// an MC x kc block of packed A (MC about 480 rows) stays in L2 while every B panel of the
// thread's columns passes over it:
//
//   for each K slice s                              (beta applies only to the first slice)
//     for each MC block of the thread's rows        (packed A block lives in L2)
//       for each NR panel of the thread's columns   (packed B panel lives in L1)
//         for each MR panel of the block            micro-kernel: MR x NR tile of C
//
// Packing. Every operand element is copied once per chunk into contiguous, 64-byte aligned,
// zero-padded panels, laid out k-major (A: MR values per k step, B: NR values per k step) so
// the kernel reads both with unit stride. The packers read through arbitrary (row, column)
// element strides, so transposed operands (row stride 1) and broadcast operands (stride 0)
// need no copy before the call; the common layouts have vectorised fast paths. Edge tiles
// (M or N not a multiple of the tile) run the same kernel on the zero-padded panels into a
// scratch tile and only the valid part is merged into C. When beta == 0, C is written but
// never read, so NaN garbage in C cannot leak into the result.
//
// Threading. C is split along N or M (whichever balances better) into one rectangle of
// tiles per part, and each part runs on a Parallel.For worker. Packed panels are shared:
// every panel has a flag (free / packing / ready). A part first packs its own share of the
// panels of the slice, then computes, packing any panel still free itself and waiting only
// for panels another part is packing right now. So there is no barrier: a part never waits
// on work that has not started, which keeps it deadlock-free even when Parallel.For runs
// the parts one after another, and there is one Parallel.For per call (per chunk for huge
// operands) instead of two per K slice. Small problems run inline on the calling thread.
//
// Special shapes. A single row or column of C (M == 1 or N == 1) is a matrix-vector product,
// memory bound, where a padded tile would waste most of its lanes: it runs as dot products or
// axpys straight from the operands, no packing. Products of at most 8^3 multiply-adds use a
// plain triple loop (cheaper than packing). K == 0 or alpha == 0 only scale C by beta.
//
// maxThreads <= 0 means all cores; the thread count never exceeds the core count.

using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Cpu;

/// <summary>Selects a micro-kernel family; Auto picks the widest one the hardware runs.
/// Explicit values let tests exercise every path on one machine (unsupported ones degrade).</summary>
internal enum GemmIsa { Auto, Avx512, Avx2, Vector128, Scalar }

/// <summary>16-bit storage formats the fp32 GEMM converts while packing.</summary>
internal enum HalfKind { None, BFloat16, Float16 }

internal static unsafe class Gemm
{
    // Each part (thread) gets at least this many multiply-adds (M*N*K), so the hand-off to a
    // pool thread (about 5 us) stays small: on 2 cores 2 threads win from about 120^3 up.
    const long MinParallelWork = 1L << 20;
    // Matrix-vector products are memory bound: a second thread pays off only for matrices of
    // several MB (elements per part).
    const long MinParallelGemv = 1L << 22;
    // Up to this many multiply-adds a plain triple loop beats packing.
    const long TinyWork = 8L * 8 * 8;
    // Packed A or B of one chunk holds at most about this many elements (16 MB of floats);
    // bigger operands are processed in several chunks.
    const long PackBudget = 1L << 22;
    // K covered by one chunk: bounds the packed size in the K direction.
    const int ChunkK = 4096;

    internal static void Sgemm(int M, int N, int K, float alpha,
        float* A, long aRowStride, long aColStride,
        float* B, long bRowStride, long bColStride,
        float beta, float* C, long ldc, int maxThreads)
        => Sgemm(M, N, K, alpha, A, aRowStride, aColStride, B, bRowStride, bColStride, beta, C, ldc, maxThreads, GemmIsa.Auto);

    internal static void Dgemm(int M, int N, int K, double alpha,
        double* A, long aRowStride, long aColStride,
        double* B, long bRowStride, long bColStride,
        double beta, double* C, long ldc, int maxThreads)
        => Dgemm(M, N, K, alpha, A, aRowStride, aColStride, B, bRowStride, bColStride, beta, C, ldc, maxThreads, GemmIsa.Auto);

    /// <summary>Sgemm with an explicit kernel family (maxThreads &lt;= 0 means all cores).</summary>
    internal static void Sgemm(int M, int N, int K, float alpha,
        float* A, long aRowStride, long aColStride,
        float* B, long bRowStride, long bColStride,
        float beta, float* C, long ldc, int maxThreads, GemmIsa isa)
    {
        var p = new Problem<float>(M, N, K, alpha, A, aRowStride, aColStride, B, bRowStride, bColStride, beta, C, ldc);
        if (p.HandledWithoutPacking() || p.TryGemv(maxThreads)) return;
        RunSingle(ref p, maxThreads, isa);
    }

    /// <summary>Dgemm with an explicit kernel family (maxThreads &lt;= 0 means all cores).</summary>
    internal static void Dgemm(int M, int N, int K, double alpha,
        double* A, long aRowStride, long aColStride,
        double* B, long bRowStride, long bColStride,
        double beta, double* C, long ldc, int maxThreads, GemmIsa isa)
    {
        var p = new Problem<double>(M, N, K, alpha, A, aRowStride, aColStride, B, bRowStride, bColStride, beta, C, ldc);
        if (p.HandledWithoutPacking() || p.TryGemv(maxThreads)) return;
        switch (Resolve(isa))
        {
            case GemmIsa.Avx512: Run<double, DgemmKernelAvx512>(ref p, maxThreads); break;
            case GemmIsa.Avx2: Run<double, DgemmKernelAvx2>(ref p, maxThreads); break;
            case GemmIsa.Vector128: Run<double, DgemmKernelVector128>(ref p, maxThreads); break;
            default: Run<double, GemmKernelScalar<double>>(ref p, maxThreads); break;
        }
    }

    /// <summary>
    /// C (fp32) = alpha·A·B + beta·C for A and B stored as bf16 or f16: the operands are widened to fp32
    /// while they are packed (no fp32 copy of a whole operand), and the product accumulates in fp32 with
    /// the same kernels and blocking as Sgemm, so a packed product equals Sgemm on the widened values exactly.
    /// Products too small to pack, and single rows or columns, widen their operands into dense copies first.
    /// </summary>
    internal static void SgemmHalf(int M, int N, int K, float alpha,
        ushort* A, long aRowStride, long aColStride, ushort* B, long bRowStride, long bColStride, HalfKind kind,
        float beta, float* C, long ldc, int maxThreads, GemmIsa isa = GemmIsa.Auto)
    {
        if (M <= 0 || N <= 0) return;
        if (K <= 0 || alpha == 0 || (long)M * N * K <= TinyWork || M == 1 || N == 1)
        {
            PackBuffer tmp = PackBuffer.Rent(Align64((long)M * K * sizeof(float)) + Align64((long)K * N * sizeof(float)));
            try
            {
                float* a = (float*)tmp.Ptr, b = (float*)((byte*)tmp.Ptr + Align64((long)M * K * sizeof(float)));
                for (int i = 0; i < M; i++) for (int k = 0; k < K; k++) a[(long)i * K + k] = Widen(A[i * aRowStride + k * aColStride], kind);
                for (int k = 0; k < K; k++) for (int j = 0; j < N; j++) b[(long)k * N + j] = Widen(B[k * bRowStride + j * bColStride], kind);
                Sgemm(M, N, K, alpha, a, K, 1, b, N, 1, beta, C, ldc, maxThreads, isa);
            }
            finally { PackBuffer.Return(tmp); }
            return;
        }
        var p = new Problem<float>(M, N, K, alpha, null, aRowStride, aColStride, null, bRowStride, bColStride, beta, C, ldc)
        {
            AHalf = A, BHalf = B, Kind = kind,
        };
        RunSingle(ref p, maxThreads, isa);
    }

    /// <summary>The packed fp32 path with the kernel family this machine runs for <paramref name="isa"/>.</summary>
    static void RunSingle(ref Problem<float> p, int maxThreads, GemmIsa isa)
    {
        switch (Resolve(isa))
        {
            case GemmIsa.Avx512: Run<float, SgemmKernelAvx512>(ref p, maxThreads); break;
            case GemmIsa.Avx2: Run<float, SgemmKernelAvx2>(ref p, maxThreads); break;
            case GemmIsa.Vector128: Run<float, SgemmKernelVector128>(ref p, maxThreads); break;
            default: Run<float, GemmKernelScalar<float>>(ref p, maxThreads); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Widen(ushort bits, HalfKind kind) =>
        kind == HalfKind.BFloat16 ? BitConverter.UInt32BitsToSingle((uint)bits << 16) : (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>Maps a requested kernel family to one this machine can run.</summary>
    internal static GemmIsa Resolve(GemmIsa isa)
    {
        if (isa == GemmIsa.Auto) isa = GemmIsa.Avx512;
        if (isa == GemmIsa.Avx512 && !(Vector512.IsHardwareAccelerated && Avx512F.IsSupported)) isa = GemmIsa.Avx2;
        if (isa == GemmIsa.Avx2 && !(Vector256.IsHardwareAccelerated && Fma.IsSupported)) isa = GemmIsa.Vector128;
        if (isa == GemmIsa.Vector128 && !Vector128.IsHardwareAccelerated) isa = GemmIsa.Scalar;
        return isa;
    }

    // Panel flags: a panel is packed by whoever moves its flag from Free to Packing.
    const int Free = 0, Packing = 1, Ready = 2;

    /// <summary>The call's arguments plus the chunk being processed (shared by all parts).</summary>
    struct Problem<T> where T : unmanaged, INumber<T>
    {
        public readonly int M, N, K;
        public readonly T Alpha, Beta;
        public readonly T* A, B, C;
        public readonly long Ars, Acs, Brs, Bcs, Ldc;

        // Current chunk: rows [M0, M0 + Mc), columns [N0, N0 + Nc), K [K0, K0 + Slices * KcMax).
        public int M0, Mc, N0, Nc, K0, Slices, KcMax, APanels, BPanels, Parts;
        public bool SplitN;
        public T* PackA, PackB;   // [slice][panel][kc][MR or NR], panel stride MR/NR * KcMax
        public ushort* AHalf, BHalf; // 16-bit operands (SgemmHalf; A and B are null then), widened while packing
        public HalfKind Kind;
        public int* AFlags, BFlags; // [slice][panel]

        public Problem(int m, int n, int k, T alpha, T* a, long ars, long acs, T* b, long brs, long bcs,
            T beta, T* c, long ldc)
        {
            M = m; N = n; K = k; Alpha = alpha; Beta = beta;
            A = a; Ars = ars; Acs = acs; B = b; Brs = brs; Bcs = bcs; C = c; Ldc = ldc;
        }

        /// <summary>Finishes the call directly when there is nothing to pack: empty C,
        /// K == 0 or alpha == 0 (C = beta * C), or a product so small that a triple loop wins.</summary>
        public readonly bool HandledWithoutPacking()
        {
            if (M <= 0 || N <= 0) return true;
            bool noProduct = K <= 0 || Alpha == T.Zero;
            if (!noProduct && (long)M * N * K > TinyWork) return false;
            if (noProduct && Beta == T.One) return true; // C unchanged
            for (int i = 0; i < M; i++)
            {
                T* row = C + i * Ldc;
                for (int j = 0; j < N; j++)
                {
                    T acc = T.Zero;
                    if (!noProduct)
                    {
                        T* a = A + i * Ars, b = B + j * Bcs;
                        for (int k = 0; k < K; k++) acc += a[k * Acs] * b[k * Brs];
                        acc *= Alpha;
                    }
                    row[j] = Beta == T.Zero ? acc : acc + Beta * row[j];
                }
            }
            return true;
        }

        /// <summary>A single row or column of C is a matrix-vector product: memory bound, and a
        /// padded MR x NR tile would waste most of its lanes, so it skips packing entirely.</summary>
        public readonly bool TryGemv(int maxThreads)
        {
            // N == 1: y = A x with y a column of C. M == 1: y = B^T x with y the row of C.
            if (N == 1) Gemv(M, K, Alpha, A, Ars, Acs, B, Brs, Beta, C, Ldc, maxThreads);
            else if (M == 1) Gemv(N, K, Alpha, B, Bcs, Brs, A, Acs, Beta, C, 1, maxThreads);
            else return false;
            return true;
        }

        public readonly T* APanel(int s, int ip, int MR) => PackA + ((long)s * APanels + ip) * MR * KcMax;
        public readonly T* BPanel(int s, int jp, int NR) => PackB + ((long)s * BPanels + jp) * NR * KcMax;
        public readonly int SliceKc(int s) => Math.Min(KcMax, K - K0 - s * KcMax);
    }

    static void Run<T, TK>(ref Problem<T> p, int maxThreads)
        where T : unmanaged, INumber<T> where TK : struct, IGemmKernel<T>
    {
        int MR = TK.MR, NR = TK.NR;
        // Equal K slices of at most KC (no tiny trailing slice), grouped into chunks of ChunkK.
        int slicesTotal = (p.K + TK.KC - 1) / TK.KC;
        int kcMax = (p.K + slicesTotal - 1) / slicesTotal;
        int slicesPerChunk = Math.Clamp(ChunkK / kcMax, 1, slicesTotal);
        long kChunk = (long)slicesPerChunk * kcMax;
        // Rows / columns per chunk: whole M and N unless the packed operand would pass the budget.
        int mChunk = ChunkSize(p.M, MR, PackBudget / kChunk);
        int nChunk = ChunkSize(p.N, NR, PackBudget / kChunk);
        int aPanels = (mChunk + MR - 1) / MR, bPanels = (nChunk + NR - 1) / NR;

        long aBytes = Align64((long)slicesPerChunk * aPanels * MR * kcMax * sizeof(T));
        long bBytes = Align64((long)slicesPerChunk * bPanels * NR * kcMax * sizeof(T));
        long flagCount = (long)slicesPerChunk * (aPanels + bPanels);
        PackBuffer buf = PackBuffer.Rent(aBytes + bBytes + flagCount * sizeof(int));
        try
        {
            byte* mem = (byte*)buf.Ptr;
            p.PackA = (T*)mem;
            p.PackB = (T*)(mem + aBytes);
            p.AFlags = (int*)(mem + aBytes + bBytes);
            p.BFlags = p.AFlags + (long)slicesPerChunk * aPanels;
            p.KcMax = kcMax;
            ParallelJob<T, TK>? job = null;
            for (int k0 = 0; k0 < p.K; k0 += (int)kChunk)
            {
                p.K0 = k0;
                p.Slices = (int)Math.Min(slicesPerChunk, (p.K - k0 + kcMax - 1) / kcMax);
                for (int m0 = 0; m0 < p.M; m0 += mChunk)
                {
                    for (int n0 = 0; n0 < p.N; n0 += nChunk)
                    {
                        p.M0 = m0; p.Mc = Math.Min(mChunk, p.M - m0);
                        p.N0 = n0; p.Nc = Math.Min(nChunk, p.N - n0);
                        p.APanels = (p.Mc + MR - 1) / MR;
                        p.BPanels = (p.Nc + NR - 1) / NR;
                        new Span<int>(p.AFlags, (int)flagCount).Clear();
                        p.Parts = ChooseParts(ref p, MR, NR, maxThreads);
                        if (p.Parts == 1)
                        {
                            Part<T, TK>(ref p, 0);
                        }
                        else
                        {
                            job ??= new ParallelJob<T, TK>();
                            job.Run(ref p);
                        }
                    }
                }
            }
        }
        finally
        {
            PackBuffer.Return(buf);
        }
    }

    static long Align64(long bytes) => (bytes + 63) & ~63L;

    /// <summary>Chunk length along M or N: everything if it fits the element budget, else
    /// equal pieces (multiples of the tile) that do.</summary>
    static int ChunkSize(int total, int tile, long maxLen)
    {
        long cap = Math.Max(tile, maxLen / tile * tile);
        if (total <= cap) return total;
        long pieces = (total + cap - 1) / cap;
        long len = (total + pieces - 1) / pieces;
        return (int)((len + tile - 1) / tile * tile);
    }

    /// <summary>How many parts (threads) the chunk uses, and whether C is split along N or M.</summary>
    static int ChooseParts<T>(ref Problem<T> p, int MR, int NR, int maxThreads) where T : unmanaged, INumber<T>
    {
        long work = (long)p.Mc * p.Nc * p.Slices * p.KcMax;
        int parts = Math.Min(maxThreads <= 0 ? int.MaxValue : maxThreads, Environment.ProcessorCount);
        parts = (int)Math.Min(parts, Math.Max(1, work / MinParallelWork));
        if (parts <= 1) return 1;
        // The larger share of C a part gets under each split, padding included; ties go to N
        // because then each part packs only its own B panels.
        long shareN = (long)((p.BPanels + parts - 1) / parts) * NR * p.Mc;
        long shareM = (long)((p.APanels + parts - 1) / parts) * MR * p.Nc;
        p.SplitN = shareN <= shareM;
        return Math.Min(parts, p.SplitN ? p.BPanels : p.APanels);
    }

    /// <summary>Range [lo, hi) of count items that part `part` of `parts` owns.</summary>
    static void Share(int count, int part, int parts, out int lo, out int hi)
    {
        lo = (int)((long)count * part / parts);
        hi = (int)((long)count * (part + 1) / parts);
    }

    /// <summary>One part's work on the current chunk: its rectangle of C tiles over all K slices.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Part<T, TK>(ref Problem<T> p, int part)
        where T : unmanaged, INumber<T> where TK : struct, IGemmKernel<T>
    {
        int MR = TK.MR, NR = TK.NR;
        int ip0 = 0, ip1 = p.APanels, jp0 = 0, jp1 = p.BPanels;
        if (p.SplitN) Share(p.BPanels, part, p.Parts, out jp0, out jp1);
        else Share(p.APanels, part, p.Parts, out ip0, out ip1);
        Share(p.APanels, part, p.Parts, out int aShare0, out int aShare1);
        Share(p.BPanels, part, p.Parts, out int bShare0, out int bShare1);

        // The shared operand is walked starting at this part's own share, so parts do not all
        // queue for the panels at the front.
        int mcPanels = Math.Max(1, TK.MC / MR);
        int blocks = (ip1 - ip0 + mcPanels - 1) / mcPanels;
        int blockStart = p.SplitN ? Math.Min(blocks - 1, (aShare0 - ip0) / mcPanels) : 0;
        int jCount = jp1 - jp0;
        int jStart = p.SplitN ? 0 : bShare0 - jp0;

        // Only the operand along the split is shared between parts (all of A when splitting N).
        // The other one is private: each part packs exactly its own panels, without flags, and
        // reuses one slice of storage for every K slice, which keeps the cache footprint small.
        bool sharedA = p.Parts > 1 && p.SplitN, sharedB = p.Parts > 1 && !p.SplitN;
        T* tile = stackalloc T[MR * NR];
        T alpha = p.Alpha;
        long ldc = p.Ldc;
        for (int s = 0; s < p.Slices; s++)
        {
            int kc = p.SliceKc(s);
            T beta = p.K0 == 0 && s == 0 ? p.Beta : T.One;
            if (sharedA) PackShare<T, TK>(ref p, s, aShare0, aShare1, isA: true);
            else PackPanels<T, TK>(ref p, s, 0, ip0, ip1, isA: true);
            if (sharedB) PackShare<T, TK>(ref p, s, bShare0, bShare1, isA: false);
            else PackPanels<T, TK>(ref p, s, 0, jp0, jp1, isA: false);
            for (int bi = 0; bi < blocks; bi++)
            {
                int ib = ip0 + (bi + blockStart) % blocks * mcPanels;
                int ibEnd = Math.Min(ib + mcPanels, ip1);
                for (int jj = 0; jj < jCount; jj++)
                {
                    int jp = jp0 + (jj + jStart) % jCount;
                    int j = jp * NR, nr = Math.Min(NR, p.Nc - j);
                    T* bp = sharedB ? Ensure<T, TK>(ref p, s, jp, isA: false) : p.BPanel(0, jp, NR);
                    T* cCol = p.C + p.N0 + j;
                    for (int ip = ib; ip < ibEnd; ip++)
                    {
                        int i = ip * MR, mr = Math.Min(MR, p.Mc - i);
                        T* ap = sharedA ? Ensure<T, TK>(ref p, s, ip, isA: true) : p.APanel(0, ip, MR);
                        T* c = cCol + (p.M0 + i) * ldc;
                        if (mr == MR && nr == NR)
                        {
                            TK.Run(kc, ap, bp, c, (nint)ldc, alpha, beta);
                            continue;
                        }
                        // Edge tile: full-size product into scratch, merge only the valid part.
                        TK.Run(kc, ap, bp, tile, NR, alpha, T.Zero);
                        for (int r = 0; r < mr; r++)
                        {
                            T* cr = c + r * ldc, tr = tile + r * NR;
                            if (beta == T.Zero) for (int q = 0; q < nr; q++) cr[q] = tr[q];
                            else for (int q = 0; q < nr; q++) cr[q] = tr[q] + beta * cr[q];
                        }
                    }
                }
            }
        }
    }

    /// <summary>Returns the packed panel, packing it now if no part has started on it, or
    /// waiting for the part that is packing it (that part is running, so this ends soon).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static T* Ensure<T, TK>(ref Problem<T> p, int s, int panel, bool isA)
        where T : unmanaged, INumber<T> where TK : struct, IGemmKernel<T>
    {
        int* flag = isA ? p.AFlags + (long)s * p.APanels + panel : p.BFlags + (long)s * p.BPanels + panel;
        if (Volatile.Read(ref *flag) != Ready)
        {
            if (Interlocked.CompareExchange(ref *flag, Packing, Free) == Free)
            {
                PackPanels<T, TK>(ref p, s, s, panel, panel + 1, isA);
                Volatile.Write(ref *flag, Ready);
            }
            else
            {
                var spin = new SpinWait();
                while (Volatile.Read(ref *flag) != Ready) spin.SpinOnce(sleep1Threshold: -1);
            }
        }
        return isA ? p.APanel(s, panel, TK.MR) : p.BPanel(s, panel, TK.NR);
    }

    /// <summary>Packs the still-free panels of [lo, hi) for slice s, in runs of adjacent
    /// panels (so contiguous layouts are read in long lines) that stay short enough for
    /// another part needing one of them not to wait long.</summary>
    static void PackShare<T, TK>(ref Problem<T> p, int s, int lo, int hi, bool isA)
        where T : unmanaged, INumber<T> where TK : struct, IGemmKernel<T>
    {
        const int MaxRun = 8;
        int* flags = isA ? p.AFlags + (long)s * p.APanels : p.BFlags + (long)s * p.BPanels;
        for (int i = lo; i < hi;)
        {
            int end = i;
            while (end < hi && end - i < MaxRun && Interlocked.CompareExchange(ref flags[end], Packing, Free) == Free) end++;
            if (end == i) { i++; continue; } // someone else has it
            PackPanels<T, TK>(ref p, s, s, i, end, isA);
            for (int q = i; q < end; q++) Volatile.Write(ref flags[q], Ready);
            i = end;
        }
    }

    /// <summary>Packs panels [lo, hi) of A (MR rows each) or B (NR columns each) of K slice s
    /// into the storage of slice `store`.</summary>
    static void PackPanels<T, TK>(ref Problem<T> p, int s, int store, int lo, int hi, bool isA)
        where T : unmanaged, INumber<T> where TK : struct, IGemmKernel<T>
    {
        int W = isA ? TK.MR : TK.NR, kc = p.SliceKc(s);
        long pc = p.K0 + (long)s * p.KcMax;
        // Operand viewed as lines (rows of A, columns of B) along k.
        int lines = isA ? p.Mc : p.Nc;
        long lineStride = isA ? p.Ars : p.Bcs, kStride = isA ? p.Acs : p.Brs;
        T* dst0 = isA ? p.APanel(store, 0, W) : p.BPanel(store, 0, W);
        long panelStride = (long)W * p.KcMax;
        if (p.Kind != HalfKind.None)
        {
            ushort* h = isA ? p.AHalf + p.M0 * p.Ars + pc * p.Acs : p.BHalf + pc * p.Brs + p.N0 * p.Bcs;
            for (int q = lo; q < hi; q++)
            {
                int first = q * W;
                PackHalf((float*)(dst0 + q * panelStride), h + first * lineStride, lineStride, kStride, Math.Min(W, lines - first), W, kc, p.Kind);
            }
            return;
        }
        T* src = isA ? p.A + p.M0 * p.Ars + pc * p.Acs : p.B + pc * p.Brs + p.N0 * p.Bcs;
        if (lineStride == 1)
        {
            // Lines adjacent in memory (column-major A, row-major B): copy each k across all
            // full panels of the run at once, one long contiguous read.
            int full = Math.Min(hi, lines / W);
            if (full > lo) PackCopy(dst0 + lo * panelStride, src + (long)lo * W, kStride, W, kc, full - lo, panelStride);
            lo = Math.Max(lo, full);
        }
        for (int q = lo; q < hi; q++)
        {
            int first = q * W, count = Math.Min(W, lines - first);
            T* d = dst0 + q * panelStride, sq = src + first * lineStride;
            if (count == W && kStride == 1) PackTranspose(d, sq, lineStride, W, kc);
            else PackStrided(d, sq, lineStride, kStride, count, W, kc);
        }
    }

    /// <summary>y[i] = alpha * sum_k mat[i, k] * x[k] + beta * y[i] for i &lt; L (element strides
    /// as named). Rows of mat contiguous: 4 dot products at a time; columns contiguous: axpy of
    /// 4 columns at a time into a contiguous accumulator; otherwise scalar. x is made contiguous
    /// first. Large products split their rows over threads (more memory bandwidth).</summary>
    static void Gemv<T>(int L, int K, T alpha, T* mat, long mrs, long mcs, T* x, long xs, T beta, T* y, long ys, int maxThreads)
        where T : unmanaged, INumber<T>
    {
        PackBuffer buf = PackBuffer.Rent(Align64((long)K * sizeof(T)) + Align64((long)L * sizeof(T)));
        try
        {
            var g = new GemvArgs<T> { L = L, K = K, Alpha = alpha, Beta = beta, Mat = mat, Mrs = mrs, Mcs = mcs, Y = y, Ys = ys };
            g.X = (T*)buf.Ptr;
            g.Acc = (T*)((byte*)buf.Ptr + Align64((long)K * sizeof(T)));
            for (int k = 0; k < K; k++) g.X[k] = x[k * xs];
            long work = (long)L * K;
            g.Parts = (int)Math.Min(Math.Min(maxThreads <= 0 ? int.MaxValue : maxThreads, Environment.ProcessorCount),
                Math.Max(1, Math.Min(work / MinParallelGemv, L / 64)));
            if (g.Parts <= 1) GemvPart(ref g, 0);
            else new GemvJob<T>(g).Run();
        }
        finally
        {
            PackBuffer.Return(buf);
        }
    }

    struct GemvArgs<T> where T : unmanaged
    {
        public int L, K, Parts;
        public T Alpha, Beta;
        public T* Mat, X, Y, Acc;
        public long Mrs, Mcs, Ys;
    }

    sealed class GemvJob<T>(GemvArgs<T> g) where T : unmanaged, INumber<T>
    {
        GemvArgs<T> _g = g;
        public void Run() => Parallel.For(0, _g.Parts, new ParallelOptions { MaxDegreeOfParallelism = _g.Parts }, part => GemvPart(ref _g, part));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector<T> MulAdd<T>(Vector<T> a, Vector<T> b, Vector<T> c) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return Vector.MultiplyAddEstimate(a.As<T, float>(), b.As<T, float>(), c.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector.MultiplyAddEstimate(a.As<T, double>(), b.As<T, double>(), c.As<T, double>()).As<double, T>();
        return a * b + c;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void GemvPart<T>(ref GemvArgs<T> g, int part) where T : unmanaged, INumber<T>
    {
        Share(g.L, part, g.Parts, out int i0, out int i1);
        int K = g.K, V = Vector<T>.Count;
        T* x = g.X, acc = g.Acc;
        if (g.Mcs == 1)
        {
            int i = i0;
            for (; i + 4 <= i1; i += 4)
            {
                T* r0 = g.Mat + i * g.Mrs, r1 = r0 + g.Mrs, r2 = r1 + g.Mrs, r3 = r2 + g.Mrs;
                Vector<T> s0 = Vector<T>.Zero, s1 = s0, s2 = s0, s3 = s0;
                int k = 0;
                for (; k + V <= K; k += V)
                {
                    var xv = Vector.Load(x + k);
                    s0 = MulAdd(Vector.Load(r0 + k), xv, s0); s1 = MulAdd(Vector.Load(r1 + k), xv, s1);
                    s2 = MulAdd(Vector.Load(r2 + k), xv, s2); s3 = MulAdd(Vector.Load(r3 + k), xv, s3);
                }
                T d0 = Vector.Sum(s0), d1 = Vector.Sum(s1), d2 = Vector.Sum(s2), d3 = Vector.Sum(s3);
                for (; k < K; k++) { d0 += r0[k] * x[k]; d1 += r1[k] * x[k]; d2 += r2[k] * x[k]; d3 += r3[k] * x[k]; }
                acc[i] = d0; acc[i + 1] = d1; acc[i + 2] = d2; acc[i + 3] = d3;
            }
            for (; i < i1; i++)
            {
                T* r = g.Mat + i * g.Mrs;
                Vector<T> s0 = Vector<T>.Zero;
                int k = 0;
                for (; k + V <= K; k += V) s0 = MulAdd(Vector.Load(r + k), Vector.Load(x + k), s0);
                T d = Vector.Sum(s0);
                for (; k < K; k++) d += r[k] * x[k];
                acc[i] = d;
            }
        }
        else if (g.Mrs == 1)
        {
            new Span<T>(acc + i0, i1 - i0).Clear();
            int k = 0;
            for (; k + 4 <= K; k += 4)
            {
                // Four columns per pass over the accumulator.
                T* c0 = g.Mat + k * g.Mcs, c1 = c0 + g.Mcs, c2 = c1 + g.Mcs, c3 = c2 + g.Mcs;
                T x0 = x[k], x1 = x[k + 1], x2 = x[k + 2], x3 = x[k + 3];
                Vector<T> v0 = new(x0), v1 = new(x1), v2 = new(x2), v3 = new(x3);
                int i = i0;
                for (; i + V <= i1; i += V)
                {
                    var a = Vector.Load(acc + i);
                    a = MulAdd(Vector.Load(c0 + i), v0, a); a = MulAdd(Vector.Load(c1 + i), v1, a);
                    a = MulAdd(Vector.Load(c2 + i), v2, a); a = MulAdd(Vector.Load(c3 + i), v3, a);
                    a.Store(acc + i);
                }
                for (; i < i1; i++) acc[i] += c0[i] * x0 + c1[i] * x1 + c2[i] * x2 + c3[i] * x3;
            }
            for (; k < K; k++)
            {
                T* c0 = g.Mat + k * g.Mcs;
                T x0 = x[k];
                Vector<T> v0 = new(x0);
                int i = i0;
                for (; i + V <= i1; i += V) MulAdd(Vector.Load(c0 + i), v0, Vector.Load(acc + i)).Store(acc + i);
                for (; i < i1; i++) acc[i] += c0[i] * x0;
            }
        }
        else
        {
            for (int i = i0; i < i1; i++)
            {
                T* r = g.Mat + i * g.Mrs;
                T d = T.Zero;
                for (int k = 0; k < K; k++) d += r[k * g.Mcs] * x[k];
                acc[i] = d;
            }
        }
        T alpha = g.Alpha, beta = g.Beta;
        for (int i = i0; i < i1; i++)
        {
            T* yi = g.Y + i * g.Ys;
            *yi = beta == T.Zero ? alpha * acc[i] : alpha * acc[i] + beta * *yi;
        }
    }

    // The packers write one or more panels of width W (lines) by kc, k-major:
    //   dst[k * W + l] = src[l * lineStride + k * kStride].

    /// <summary>Lines adjacent (lineStride 1): vector copies of W elements per k and panel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackCopy<T>(T* dst, T* src, long kStride, int W, int kc, int panels, long panelStride) where T : unmanaged
    {
        for (int k = 0; k < kc; k++, src += kStride)
        {
            T* s = src, d = dst + (long)k * W;
            for (int q = 0; q < panels; q++, s += W, d += panelStride)
            {
                int l = 0;
                if (Vector256.IsHardwareAccelerated)
                    for (; l + Vector256<T>.Count <= W; l += Vector256<T>.Count) Vector256.Store(Vector256.Load(s + l), d + l);
                for (; l + Vector128<T>.Count <= W; l += Vector128<T>.Count) Vector128.Store(Vector128.Load(s + l), d + l);
                for (; l < W; l++) d[l] = s[l];
            }
        }
    }

    /// <summary>Each line contiguous along k (row-major A, column-major B): a transpose, done as
    /// 4 x 4 register transposes so the reads stay sequential in all W lines at once and the
    /// writes are whole vectors. (Element by element it cost about a tenth of the whole GEMM
    /// at n = 1024.)</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackTranspose<T>(T* dst, T* src, long lineStride, int W, int kc) where T : unmanaged
    {
        int k = 0, w4 = W & ~3;
        if (typeof(T) == typeof(float) && Sse.IsSupported)
        {
            for (; k + 4 <= kc; k += 4)
            {
                for (int l = 0; l < w4; l += 4)
                {
                    float* s = (float*)src + l * lineStride + k;
                    Vector128<float> r0 = Sse.LoadVector128(s), r1 = Sse.LoadVector128(s + lineStride);
                    Vector128<float> r2 = Sse.LoadVector128(s + 2 * lineStride), r3 = Sse.LoadVector128(s + 3 * lineStride);
                    Vector128<float> t0 = Sse.UnpackLow(r0, r1), t1 = Sse.UnpackLow(r2, r3);   // a0 b0 a1 b1 | c0 d0 c1 d1
                    Vector128<float> t2 = Sse.UnpackHigh(r0, r1), t3 = Sse.UnpackHigh(r2, r3); // a2 b2 a3 b3 | c2 d2 c3 d3
                    float* d = (float*)dst + (long)k * W + l;
                    Sse.Store(d, Sse.MoveLowToHigh(t0, t1));
                    Sse.Store(d + W, Sse.MoveHighToLow(t1, t0));
                    Sse.Store(d + 2 * W, Sse.MoveLowToHigh(t2, t3));
                    Sse.Store(d + 3 * W, Sse.MoveHighToLow(t3, t2));
                }
                for (int l = w4; l < W; l++)
                    for (int q = 0; q < 4; q++) dst[(long)(k + q) * W + l] = src[l * lineStride + k + q];
            }
        }
        else if (typeof(T) == typeof(double) && Avx.IsSupported)
        {
            for (; k + 4 <= kc; k += 4)
            {
                for (int l = 0; l < w4; l += 4)
                {
                    double* s = (double*)src + l * lineStride + k;
                    Vector256<double> r0 = Avx.LoadVector256(s), r1 = Avx.LoadVector256(s + lineStride);
                    Vector256<double> r2 = Avx.LoadVector256(s + 2 * lineStride), r3 = Avx.LoadVector256(s + 3 * lineStride);
                    Vector256<double> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1); // a0 b0 a2 b2 | a1 b1 a3 b3
                    Vector256<double> t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3); // c0 d0 c2 d2 | c1 d1 c3 d3
                    double* d = (double*)dst + (long)k * W + l;
                    Avx.Store(d, Avx.Permute2x128(t0, t2, 0x20));
                    Avx.Store(d + W, Avx.Permute2x128(t1, t3, 0x20));
                    Avx.Store(d + 2 * W, Avx.Permute2x128(t0, t2, 0x31));
                    Avx.Store(d + 3 * W, Avx.Permute2x128(t1, t3, 0x31));
                }
                for (int l = w4; l < W; l++)
                    for (int q = 0; q < 4; q++) dst[(long)(k + q) * W + l] = src[l * lineStride + k + q];
            }
        }
        for (; k < kc; k++)
            for (int l = 0; l < W; l++) dst[(long)k * W + l] = src[l * lineStride + k];
    }

    /// <summary>Any strides (0 for broadcast operands) and partial panels; lines [lines, W)
    /// are zero so the padded tile rows / columns compute harmless zeros.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackStrided<T>(T* dst, T* src, long lineStride, long kStride, int lines, int W, int kc) where T : unmanaged
    {
        for (int k = 0; k < kc; k++, dst += W, src += kStride)
        {
            int l = 0;
            for (; l < lines; l++) dst[l] = src[l * lineStride];
            for (; l < W; l++) dst[l] = default;
        }
    }

    /// <summary>PackStrided for 16-bit sources, widening to fp32. Adjacent lines (lineStride 1, e.g. a
    /// row-major weight as B) widen 8 at a time: bf16 is the high half of an fp32, f16 converts exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackHalf(float* dst, ushort* src, long lineStride, long kStride, int lines, int W, int kc, HalfKind kind)
    {
        for (int k = 0; k < kc; k++, dst += W, src += kStride)
        {
            int l = 0;
            if (lineStride == 1 && kind == HalfKind.BFloat16 && Vector256.IsHardwareAccelerated)
                for (; l + 8 <= lines; l += 8)
                {
                    var wide = Vector256.WidenLower(Vector128.Load(src + l).ToVector256Unsafe()) << 16;
                    Vector256.Store(wide.AsSingle(), dst + l);
                }
            for (; l < lines; l++) dst[l] = Widen(src[l * lineStride], kind);
            for (; l < W; l++) dst[l] = 0;
        }
    }

    /// <summary>Runs the parts of a chunk on pool threads. One instance per multi-threaded call
    /// (its delegate is cached, so chunks after the first allocate nothing).</summary>
    sealed class ParallelJob<T, TK> where T : unmanaged, INumber<T> where TK : struct, IGemmKernel<T>
    {
        Problem<T> _p;
        readonly Action<int> _part;

        public ParallelJob() => _part = part => Part<T, TK>(ref _p, part);

        public void Run(ref Problem<T> p)
        {
            _p = p;
            Parallel.For(0, p.Parts, new ParallelOptions { MaxDegreeOfParallelism = p.Parts }, _part);
        }
    }

    /// <summary>A 64-byte aligned native scratch block, pooled across calls. Native memory keeps
    /// the GC out of the way and gives the alignment the kernels' aligned loads rely on; the
    /// finalizer frees blocks the pool had no room to keep.</summary>
    sealed class PackBuffer
    {
        static readonly PackBuffer?[] s_pool = new PackBuffer?[Math.Max(4, Environment.ProcessorCount)];
        public void* Ptr;
        long _bytes;

        public static PackBuffer Rent(long bytes)
        {
            PackBuffer? b = null;
            for (int i = 0; i < s_pool.Length && b is null; i++) b = Interlocked.Exchange(ref s_pool[i], null);
            b ??= new PackBuffer();
            if (b._bytes < bytes)
            {
                if (b.Ptr != null) NativeMemory.AlignedFree(b.Ptr);
                b.Ptr = null; // consistent even if the allocation below throws
                b._bytes = 0;
                long size = Math.Max(bytes, 256 * 1024);
                b.Ptr = NativeMemory.AlignedAlloc((nuint)size, 64);
                b._bytes = size;
            }
            return b;
        }

        public static void Return(PackBuffer b)
        {
            for (int i = 0; i < s_pool.Length; i++)
                if (Interlocked.CompareExchange(ref s_pool[i], b, null) is null) return;
        }

        ~PackBuffer()
        {
            if (Ptr != null) NativeMemory.AlignedFree(Ptr);
        }
    }
}
