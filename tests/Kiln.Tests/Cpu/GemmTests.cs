// Tests for Kiln.Cpu.Gemm (Sgemm / Dgemm): every result is compared with a naive triple loop
// evaluated in double, over awkward sizes (tile edges, K = 0, single rows / columns), operand
// layouts (row-major, transposed, strided, broadcast through stride 0, negative row stride),
// alpha / beta variations, every micro-kernel family, threading, and the chunked path for
// operands larger than the packing budget. C always has a padded leading dimension, so writes
// outside the M x N block are caught, and beta == 0 runs start from NaN-filled C.
using System.Numerics;
using Kiln.Cpu;
using Xunit;

namespace Kiln.Tests;

public class GemmTests
{
    public enum Layout { RowMajor, Transposed, Strided, BroadcastRows, BroadcastCols, NegativeRows }

    static readonly int[] Edge = [0, 1, 2, 3, 7, 15, 16, 17, 31, 33];
    static readonly int[] Sizes = [0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 127, 129, 257];

    [Fact]
    public void EdgeSizes_RowMajor_AllCombinations()
    {
        var rng = new Random(1);
        foreach (int m in Edge)
            foreach (int n in Edge)
                foreach (int k in Edge)
                {
                    Check<float>(m, n, k, 1.5, 0, Layout.RowMajor, Layout.RowMajor, 1, GemmIsa.Auto, rng);
                    Check<double>(m, n, k, -0.5, 2, Layout.RowMajor, Layout.RowMajor, 1, GemmIsa.Auto, rng);
                }
    }

    public static TheoryData<Layout, Layout> LayoutPairs()
    {
        var data = new TheoryData<Layout, Layout>();
        foreach (var a in Enum.GetValues<Layout>())
            foreach (var b in Enum.GetValues<Layout>()) data.Add(a, b);
        return data;
    }

    [Theory]
    [MemberData(nameof(LayoutPairs))]
    public void Layouts_RandomSizes_AlphaBeta(Layout la, Layout lb)
    {
        var rng = new Random(HashCode.Combine(la, lb));
        double[] alphas = [1, -2, 0.5], betas = [0, 1, -1.5];
        for (int t = 0; t < 24; t++)
        {
            int m = Sizes[rng.Next(Sizes.Length)], n = Sizes[rng.Next(Sizes.Length)], k = Sizes[rng.Next(Sizes.Length)];
            double alpha = alphas[t % 3], beta = betas[t / 3 % 3];
            if (t % 2 == 0) Check<float>(m, n, k, alpha, beta, la, lb, 1 + t % 2, GemmIsa.Auto, rng);
            else Check<double>(m, n, k, alpha, beta, la, lb, 1 + t / 2 % 2, GemmIsa.Auto, rng);
        }
    }

    [Theory]
    [InlineData((int)GemmIsa.Avx512)]
    [InlineData((int)GemmIsa.Avx2)]
    [InlineData((int)GemmIsa.Vector128)]
    [InlineData((int)GemmIsa.Scalar)]
    public void EveryKernelFamily_HandlesTileEdges(int family)
    {
        // Families the machine lacks fall back to a narrower one, so this never faults.
        var isa = (GemmIsa)family;
        var rng = new Random(family);
        int[] sizes = [1, 5, 6, 7, 12, 13, 31, 33, 65];
        foreach (int m in sizes)
            foreach (int n in sizes)
            {
                int k = sizes[rng.Next(sizes.Length)];
                Check<float>(m, n, k, 1, 0.5, Layout.RowMajor, Layout.Transposed, 1, isa, rng);
                Check<double>(m, n, k, -1, 0, Layout.Transposed, Layout.RowMajor, 1, isa, rng);
            }
    }

    [Fact]
    public void BetaZero_DoesNotReadC()
    {
        // Check fills C with NaN whenever beta == 0; include the tiny, GEMV and packed paths.
        var rng = new Random(3);
        foreach (var (m, n, k) in new[] { (2, 2, 2), (1, 40, 33), (40, 1, 33), (33, 65, 17), (129, 70, 40) })
        {
            Check<float>(m, n, k, 1, 0, Layout.RowMajor, Layout.RowMajor, 2, GemmIsa.Auto, rng);
            Check<double>(m, n, k, 2, 0, Layout.Transposed, Layout.Strided, 2, GemmIsa.Auto, rng);
        }
    }

    [Fact]
    public void KZeroOrAlphaZero_ScalesC()
    {
        var rng = new Random(4);
        foreach (double beta in new[] { 0.0, 1.0, -3.0 })
        {
            Check<float>(17, 33, 0, 1, beta, Layout.RowMajor, Layout.RowMajor, 1, GemmIsa.Auto, rng);
            Check<double>(17, 33, 0, 1, beta, Layout.RowMajor, Layout.RowMajor, 1, GemmIsa.Auto, rng);
            Check<float>(65, 40, 20, 0, beta, Layout.RowMajor, Layout.RowMajor, 1, GemmIsa.Auto, rng);
            Check<double>(65, 40, 20, 0, beta, Layout.RowMajor, Layout.RowMajor, 1, GemmIsa.Auto, rng);
        }
    }

    [Fact]
    public void MatrixVector_AllLayouts()
    {
        var rng = new Random(5);
        foreach (var la in Enum.GetValues<Layout>())
            foreach (var lb in Enum.GetValues<Layout>())
            {
                Check<float>(1, 70, 300, 1, 0, la, lb, 2, GemmIsa.Auto, rng);
                Check<double>(129, 1, 66, -1, 0.5, la, lb, 2, GemmIsa.Auto, rng);
            }
    }

    [Fact]
    public void MultiThreaded_MatchesReference()
    {
        var rng = new Random(6);
        Check<float>(257, 200, 129, 1, 0, Layout.RowMajor, Layout.RowMajor, 2, GemmIsa.Auto, rng);  // split along N
        Check<float>(400, 20, 129, 1, 1, Layout.Transposed, Layout.RowMajor, 2, GemmIsa.Auto, rng); // split along M
        Check<double>(129, 257, 300, -0.5, 0.25, Layout.RowMajor, Layout.Transposed, 0, GemmIsa.Auto, rng);
    }

    [Fact]
    public void LargeOperands_AreChunked()
    {
        // K > 4096 gives two K chunks (beta applied once), and M * K over the packing budget
        // splits M into chunks as well.
        var rng = new Random(7);
        Check<float>(1100, 8, 4200, 1, 0.5, Layout.RowMajor, Layout.Transposed, 2, GemmIsa.Auto, rng);
    }

    [Fact]
    public unsafe void NonFinite_StayInTheirRowsAndColumns()
    {
        // A NaN in row 1 of A, +Inf in row 2 of A and in column 3 of B; everything else positive.
        // Padded tile rows / columns compute 0 * Inf = NaN internally and must never reach C.
        var rng = new Random(8);
        foreach (var (m, n, k) in new[] { (5, 9, 7), (1, 40, 20), (40, 1, 20), (19, 37, 30), (70, 90, 40) })
        {
            foreach (bool transposeA in new[] { false, true })
            {
                var a = new float[m * k];
                var b = new float[k * n];
                for (int i = 0; i < a.Length; i++) a[i] = 0.5f + rng.NextSingle();
                for (int i = 0; i < b.Length; i++) b[i] = 0.5f + rng.NextSingle();
                long ars = transposeA ? 1 : k, acs = transposeA ? m : 1;
                int nanRow = Math.Min(1, m - 1), infRow = Math.Min(2, m - 1), infCol = Math.Min(3, n - 1);
                a[nanRow * ars + (k / 2) * acs] = float.NaN;
                if (infRow != nanRow) a[infRow * ars] = float.PositiveInfinity;
                b[(k - 1) * n + infCol] = float.PositiveInfinity;
                var c = new float[m * n];
                fixed (float* pa = a, pb = b, pc = c)
                    Gemm.Sgemm(m, n, k, 1, pa, ars, acs, pb, n, 1, 0, pc, n, 2);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                    {
                        float got = c[i * n + j];
                        string at = $"M={m} N={n} K={k} transposeA={transposeA} C[{i},{j}] = {got}";
                        if (i == nanRow) Assert.True(float.IsNaN(got), at);
                        else if (i == infRow || j == infCol) Assert.True(float.IsPositiveInfinity(got), at);
                        else Assert.True(float.IsFinite(got), at);
                    }
            }
        }
    }

    static (long rs, long cs, long span, long offset) Strides(Layout l, int rows, int cols)
    {
        rows = Math.Max(rows, 1); cols = Math.Max(cols, 1);
        return l switch
        {
            Layout.RowMajor => (cols, 1, (long)rows * cols, 0),
            Layout.Transposed => (1, rows, (long)rows * cols, 0),
            Layout.Strided => (2L * cols + 3, 2, (rows - 1) * (2L * cols + 3) + 2L * (cols - 1) + 1, 0),
            Layout.BroadcastRows => (0, 1, cols, 0),
            Layout.BroadcastCols => (1, 0, rows, 0),
            _ => (-(long)cols, 1, (long)rows * cols, (long)(rows - 1) * cols), // rows stored bottom-up
        };
    }

    /// <summary>Runs one Sgemm / Dgemm and compares it with the double-precision reference:
    /// |got - expected| &lt;= tol * sqrt(K) * (|alpha| * sum |a b| + |beta c|).</summary>
    static unsafe void Check<T>(int M, int N, int K, double alpha, double beta, Layout la, Layout lb,
        int threads, GemmIsa isa, Random rng) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (ars, acs, aSpan, aOff) = Strides(la, M, K);
        var (brs, bcs, bSpan, bOff) = Strides(lb, K, N);
        long ldc = N + 3;
        var a = new T[aSpan];
        var b = new T[bSpan];
        for (int i = 0; i < a.Length; i++) a[i] = T.CreateTruncating(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < b.Length; i++) b[i] = T.CreateTruncating(rng.NextDouble() * 2 - 1);
        var c = new T[Math.Max(1, M) * ldc];
        for (int i = 0; i < c.Length; i++) c[i] = beta == 0 ? T.NaN : T.CreateTruncating(rng.NextDouble() * 2 - 1);
        var c0 = (T[])c.Clone();

        fixed (T* pa = a, pb = b, pc = c)
        {
            if (typeof(T) == typeof(float))
                Gemm.Sgemm(M, N, K, (float)alpha, (float*)(pa + aOff), ars, acs, (float*)(pb + bOff), brs, bcs,
                    (float)beta, (float*)pc, ldc, threads, isa);
            else
                Gemm.Dgemm(M, N, K, alpha, (double*)(pa + aOff), ars, acs, (double*)(pb + bOff), brs, bcs,
                    beta, (double*)pc, ldc, threads, isa);
        }

        double tol = (typeof(T) == typeof(float) ? 1e-5 : 1e-12) * Math.Sqrt(Math.Max(K, 1));
        string what = $"{typeof(T).Name} M={M} N={N} K={K} alpha={alpha} beta={beta} {la}/{lb} threads={threads} {isa}";
        for (int i = 0; i < M; i++)
        {
            for (int j = 0; j < N; j++)
            {
                double acc = 0, mag = 0;
                for (int k = 0; k < K; k++)
                {
                    double x = double.CreateTruncating(a[aOff + i * ars + k * acs]) * double.CreateTruncating(b[bOff + k * brs + j * bcs]);
                    acc += x;
                    mag += Math.Abs(x);
                }
                double expected = alpha * acc, scale = Math.Abs(alpha) * mag;
                if (beta != 0)
                {
                    double cv = double.CreateTruncating(c0[i * ldc + j]);
                    expected += beta * cv;
                    scale += Math.Abs(beta * cv);
                }
                double got = double.CreateTruncating(c[i * ldc + j]);
                if (!(Math.Abs(got - expected) <= tol * scale + 1e-300))
                    Assert.Fail($"{what}: C[{i},{j}] = {got:R}, expected {expected:R}");
            }
            for (long j = N; j < ldc; j++)
                if (!c[i * ldc + j].Equals(c0[i * ldc + j]))
                    Assert.Fail($"{what}: wrote C[{i},{j}] outside the N columns");
        }
    }
}
