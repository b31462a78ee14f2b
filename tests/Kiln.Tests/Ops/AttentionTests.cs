namespace Kiln.Tests.Ops;

using Ops = Kiln.Ops;

/// <summary>The fused attention op against its primitives (matmul, scale, causal mask, softmax, matmul) and
/// against finite differences.</summary>
public class AttentionTests
{
    private static Tensor Primitives(Tensor q, Tensor k, Tensor v, bool causal, double scale)
    {
        var s = q.MatMul(k.T) * scale;
        if (causal) s = s.Triangle(lower: true, diagonal: k.Shape[^2] - q.Shape[^2], fill: double.NegativeInfinity);
        return s.Softmax(-1).MatMul(v);
    }

    private static void Close(Tensor expected, Tensor actual, double tol, string what)
    {
        Assert.Equal(expected.Shape, actual.Shape);
        var e = expected.ToArray<double>(); var a = actual.ToArray<double>();
        for (int i = 0; i < e.Length; i++) Assert.True(Math.Abs(e[i] - a[i]) <= tol * (1 + Math.Abs(e[i])), $"{what}[{i}]: {e[i]} vs {a[i]}");
    }

    public static TheoryData<int[], int[], int[], bool> Shapes => new()
    {
        { [2, 3, 5, 4], [2, 3, 5, 4], [2, 3, 5, 6], false },
        { [2, 3, 5, 4], [2, 3, 5, 4], [2, 3, 5, 6], true },
        { [2, 2, 3, 7, 8], [2, 2, 1, 7, 8], [2, 2, 1, 7, 8], true },     // GQA: k/v broadcast over the group axis
        { [1, 4, 1, 8], [1, 4, 9, 8], [1, 4, 9, 8], true },              // a decode step against a cache of 9
        { [3, 2, 4], [3, 6, 4], [3, 6, 5], true },                       // T < S, bottom-right causal
        { [5, 16], [33, 16], [33, 3], false },                           // no batch axes
        { [2, 4, 13, 8], [2, 4, 13, 8], [2, 4, 13, 8], true },           // head dim 8: three groups of four rows + one
        { [2, 6, 4], [2, 10, 4], [2, 10, 4], true },                     // T < S causal: a group's rows see different key counts
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ForwardAndGradientsMatchThePrimitives(int[] qs, int[] ks, int[] vs, bool causal)
    {
        foreach (var dt in new[] { DType.Float64, DType.Float32 })
        {
            var q = Tensor.RandomNormal(qs, 1, dtype: dt); var k = Tensor.RandomNormal(ks, 2, dtype: dt); var v = Tensor.RandomNormal(vs, 3, dtype: dt);
            double scale = 1 / Math.Sqrt(qs[^1]), tol = dt == DType.Float64 ? 1e-12 : 2e-5;
            var fused = Ops.ScaledDotProductAttention(q, k, v, causal);
            var reference = Primitives(q, k, v, causal, scale);
            Close(reference, fused, tol, $"forward {dt}");
            var up = Tensor.RandomNormal([.. fused.Shape], 4, dtype: dt);
            var gf = Autograd.Grad((fused * up).Sum(), q, k, v);
            var gr = Autograd.Grad((reference * up).Sum(), q, k, v);
            for (int i = 0; i < 3; i++) Close(gr[i], gf[i], dt == DType.Float64 ? 1e-11 : 1e-4, $"grad {"qkv"[i]} {dt}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FourRowFormsAreBitForBitTheRowByRowOnes(bool causal)
    {
        // fp32 forward and backward, four query rows sharing each load: the same operations per element in the same order.
        var q = Tensor.RandomNormal([2, 2, 3, 11, 8], 11); var k = Tensor.RandomNormal([2, 2, 1, 14, 8], 12); var v = Tensor.RandomNormal([2, 2, 1, 14, 8], 13);
        var up = Tensor.RandomNormal([2, 2, 3, 11, 8], 14);
        float[][] Grads() => [Ops.ScaledDotProductAttention(q, k, v, causal).ToArray<float>(),
            .. Autograd.Grad((Ops.ScaledDotProductAttention(q, k, v, causal) * up).Sum(), q, k, v).Select(t => t.ToArray<float>())];
        var grouped = Grads();
        Kiln.Cpu.AttentionKernel.GroupRows = false;
        try
        {
            var single = Grads();
            for (int i = 0; i < 4; i++) Assert.Equal(single[i], grouped[i]);   // the output, then dq, dk, dv
        }
        finally { Kiln.Cpu.AttentionKernel.GroupRows = true; }
    }

    [Fact]
    public void GradientsMatchFiniteDifferences()
    {
        var q = Tensor.RandomNormal([2, 3, 4], 5, dtype: DType.Float64);
        var k = Tensor.RandomNormal([2, 5, 4], 6, dtype: DType.Float64);
        var v = Tensor.RandomNormal([2, 5, 3], 7, dtype: DType.Float64);
        var w = Tensor.RandomNormal([2, 3, 3], 8, dtype: DType.Float64);
        Tensor[] xs = [q, k, v];
        double F(Tensor[] t) => (Ops.ScaledDotProductAttention(t[0], t[1], t[2], causal: true) * w).Sum().Item<double>();
        var grads = Autograd.Grad((Ops.ScaledDotProductAttention(q, k, v, causal: true) * w).Sum(), q, k, v);
        for (int a = 0; a < 3; a++)
        {
            var x = xs[a].ToArray<double>(); var g = grads[a].ToArray<double>();
            for (int i = 0; i < x.Length; i += 3)
            {
                const double h = 1e-6;
                var p = (double[])x.Clone(); p[i] += h; var m = (double[])x.Clone(); m[i] -= h;
                var tp = (Tensor[])xs.Clone(); tp[a] = Tensor.FromArray(p, [.. xs[a].Shape]);
                var tm = (Tensor[])xs.Clone(); tm[a] = Tensor.FromArray(m, [.. xs[a].Shape]);
                double fd = (F(tp) - F(tm)) / (2 * h);
                Assert.True(Math.Abs(fd - g[i]) < 1e-7, $"input {a}[{i}]: finite difference {fd}, analytic {g[i]}");
            }
        }
    }

    [Fact]
    public void BadShapesNameTheOpAndShapes()
    {
        var e = Assert.Throws<ArgumentException>(() => Ops.ScaledDotProductAttention(Tensor.Zeros([2, 3, 4]), Tensor.Zeros([2, 5, 6]), Tensor.Zeros([2, 5, 6])));
        Assert.Contains("attention", e.Message);
        Assert.Contains("(2, 5, 6)", e.Message);
        e = Assert.Throws<ArgumentException>(() => Ops.ScaledDotProductAttention(Tensor.Zeros([6, 4]), Tensor.Zeros([5, 4]), Tensor.Zeros([5, 4]), causal: true));
        Assert.Contains("causal", e.Message);
    }
}

public class AttentionValidKeysTests
{
    [Fact]
    public void ValidKeysEqualsSlicingTheCache()
    {
        var q = Tensor.RandomNormal([2, 3, 4, 8], 1); var k = Tensor.RandomNormal([2, 3, 16, 8], 2); var v = Tensor.RandomNormal([2, 3, 16, 8], 3);
        foreach (bool causal in new[] { false, true })
            foreach (int n in new[] { 4, 9, 16 })
            {
                var expected = Ops.ScaledDotProductAttention(q, k.Slice(2, 0, n), v.Slice(2, 0, n), causal).ToArray<float>();
                var got = Ops.ScaledDotProductAttention(q, k, v, causal, validKeys: Tensor.FromArray(new[] { n }, [])).ToArray<float>();
                for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(expected[i] - got[i]) < 1e-6, $"n={n} causal={causal} [{i}]");
            }
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ops.ScaledDotProductAttention(q, k, v, validKeys: Tensor.FromArray(new[] { 17 }, [])).Eval());
        Assert.Contains("17 valid keys", e.Message);
    }
}

public class RopeOffsetDataTests
{
    [Fact]
    public void OffsetAsDataEqualsOffsetAsAttributeWithGradients()
    {
        var x = Tensor.RandomNormal([2, 3, 5, 8], 1, dtype: DType.Float64);
        foreach (int off in new[] { 0, 7, 300 })
        {
            var byAttr = x.Rope(10000, false, off);
            var byData = x.Rope(Tensor.FromArray(new[] { off }, []), 10000);
            Assert.Equal(byAttr.ToArray<double>(), byData.ToArray<double>());
            var w = Tensor.RandomNormal([2, 3, 5, 8], 2, dtype: DType.Float64);
            Assert.Equal(Autograd.Grad((byAttr * w).Sum(), x)[0].ToArray<double>(), Autograd.Grad((byData * w).Sum(), x)[0].ToArray<double>());
        }
    }
}
