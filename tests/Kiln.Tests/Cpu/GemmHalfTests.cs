// SgemmHalf widens bf16/f16 operands while packing. Widening is exact and the kernels and blocking are
// Sgemm's, so packed products must equal Sgemm on the widened operands bit for bit, for every layout
// (row-major, transposed, broadcast) and kernel family; the small paths (tiny, single row/column, K = 0)
// agree to fp32 rounding. Sgemm itself is checked against a naive loop in GemmTests.
using Kiln.Cpu;

namespace Kiln.Tests.Cpu;

public unsafe class GemmHalfTests
{
    public static TheoryData<int, int, int, int> Cases()
    {
        var d = new TheoryData<int, int, int, int>();
        int[][] shapes = [[65, 70, 129], [300, 257, 33], [8, 32, 256], [1, 40, 17], [40, 1, 17], [3, 4, 0], [2, 2, 2], [129, 65, 600]];
        for (int s = 0; s < shapes.Length; s++) d.Add(shapes[s][0], shapes[s][1], shapes[s][2], s);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EqualsSgemmOnWidenedOperands(int m, int n, int k, int seed)
    {
        foreach (var kind in new[] { HalfKind.BFloat16, HalfKind.Float16 })
            foreach (bool transA in new[] { false, true })
                foreach (bool transB in new[] { false, true })
                    foreach (var isa in new[] { GemmIsa.Auto, GemmIsa.Avx2, GemmIsa.Scalar })
                        Check(m, n, k, kind, transA, transB, broadcastB: false, isa, seed);
        Check(m, n, k, HalfKind.BFloat16, false, false, broadcastB: true, GemmIsa.Auto, seed);
    }

    private static void Check(int m, int n, int k, HalfKind kind, bool transA, bool transB, bool broadcastB, GemmIsa isa, int seed)
    {
        var rng = new Random(seed * 31 + (int)kind);
        ushort Bits(double v) => kind == HalfKind.BFloat16 ? BFloat16.FromSingle((float)v).Bits : BitConverter.HalfToUInt16Bits((Half)v);
        float Wide(ushort b) => kind == HalfKind.BFloat16 ? BFloat16.FromBits(b).ToSingle() : (float)BitConverter.UInt16BitsToHalf(b);
        var a16 = Enumerable.Range(0, m * k).Select(_ => Bits(rng.NextDouble() * 4 - 2)).ToArray();
        var b16 = Enumerable.Range(0, Math.Max(k * n, 1)).Select(_ => Bits(rng.NextDouble() * 4 - 2)).ToArray();
        var a32 = a16.Select(Wide).ToArray();
        var b32 = b16.Select(Wide).ToArray();
        // A stored (m,k) row-major or (k,m) (transposed view); B (k,n), (n,k), or one row broadcast over k.
        long ars = transA ? 1 : k, acs = transA ? m : 1;
        long brs = broadcastB ? 0 : transB ? 1 : n, bcs = transB && !broadcastB ? k : 1;
        var expected = new float[m * n];
        var actual = new float[m * n];
        fixed (ushort* pa16 = a16, pb16 = b16)
        fixed (float* pa = a32, pb = b32, pe = expected, pr = actual)
        {
            Gemm.Sgemm(m, n, k, 1.25f, pa, ars, acs, pb, brs, bcs, 0f, pe, n, 2, isa);
            Gemm.SgemmHalf(m, n, k, 1.25f, pa16, ars, acs, pb16, brs, bcs, kind, 0f, pr, n, 2, isa);
        }
        // Packed products are bit-identical; tiny products and single rows/columns widen into dense copies
        // first, which may change Sgemm's summation order (fp32 rounding only).
        bool packed = m > 1 && n > 1 && (long)m * n * k > 512;
        for (int i = 0; i < expected.Length; i++)
            Assert.True(packed ? BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i])
                               : Math.Abs(expected[i] - actual[i]) <= 1e-5 * (1 + Math.Abs(expected[i])),
                $"{kind} ({m},{n},{k}) transA={transA} transB={transB} broadcastB={broadcastB} {isa}: element {i} is {actual[i]}, Sgemm gives {expected[i]}");
    }
}
