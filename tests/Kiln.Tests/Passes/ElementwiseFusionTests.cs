// Elementwise fusion: chains become one kernel; fused results equal the unfused twin (the same graph run as
// built) across dtypes, block boundaries, broadcast and strided inputs; values used outside a group survive.
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

using Ops = Kiln.Ops;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class ElementwiseFusionTests
{
    private static long Kernels(Action eval) => KernelCount.Of(eval);

    [Fact]
    public void TenOpChainIsOneKernel()
    {
        var x = Tensor.RandomNormal([4, 512], seed: 1);
        var y = ((((x * 1.5 + 0.5).Tanh() * x).Sigmoid() - x * 0.25).Exp() / 3).Silu().Square();
        var r = GraphOptimizer.Optimize([y.Node]);
        Assert.Equal(1, r.NodesAfter);
        Assert.Equal(1, Kernels(() => y.Eval()));
    }

    public static TheoryData<int, int> Sizes() => new() { { 1, 1 }, { 3, 341 }, { 1, 1023 }, { 1, 1024 }, { 1, 1025 }, { 7, 433 }, { 64, 300 } };

    [Theory]
    [MemberData(nameof(Sizes))]
    public void FusedEqualsUnfusedWithBroadcastAndStridedInputs(int rows, int cols)
    {
        foreach (var dt in new[] { DType.Float32, DType.Float64 })
        {
            Tensor[] Inputs() =>
            [
                Tensor.RandomNormal([rows, cols], seed: 2, dtype: dt),
                Tensor.RandomNormal([cols], seed: 3, dtype: dt),            // bias along rows
                Tensor.RandomNormal([rows, 1], seed: 4, dtype: dt),         // per-row scale
                Tensor.RandomNormal([cols, rows], seed: 5, dtype: dt).T,    // transposed (strided) input
            ];
            Tensor Graph(Tensor[] i) => Ops.Maximum((i[0] + i[1]) * i[2], i[3].Tanh()).Gelu(GeluApproximation.Tanh) - Ops.Pow(i[0].Abs() + 1, i[2].Sigmoid()) * 0.5;
            var fused = Graph(Inputs());
            var unfused = Graph(Inputs());
            // The transpose view and the (rows, 1)-shaped sigmoid stay separate (other shape); the rest is one group.
            Assert.Equal(rows * cols == 1 ? 2 : 3, Kernels(() => fused.Eval()));   // (1,1): the sigmoid has the group's shape
            Evaluator.Evaluate([unfused.Node], optimize: false);
            double tol = dt == DType.Float32 ? 2e-6 : 1e-14;
            Close.AssertAll(unfused.ToArray<double>(), fused.ToArray<double>(), tol, $"fused vs unfused {dt.ShortName()} ({rows},{cols})");
        }
    }

    [Fact]
    public void ValuesUsedOutsideTheGroupAreKept()
    {
        var x = Tensor.RandomNormal([100], seed: 6);
        var a = x.Exp();
        var y = (a * 2 + 1).Tanh();
        var z = a.Sum();                      // a has a consumer outside y's group
        Tensor.Eval(y, a, z);
        var av = a.ToArray<float>();
        Assert.Equal(x.ToArray<float>().Select(MathF.Exp).ToArray(), av, (p, q) => Math.Abs(p - q) <= 1e-6f * Math.Abs(p));
        Assert.Equal(av.Select(v => MathF.Tanh(v * 2 + 1)).ToArray(), y.ToArray<float>(), (p, q) => Math.Abs(p - q) <= 1e-6f);
        Assert.Equal(av.Sum(), z.Item<float>(), 1e-3);
    }

    [Fact]
    public void VeryLongChainsFuseWithoutRecursion()
    {
        var x = Tensor.RandomNormal([8], seed: 7);
        var y = x;
        for (int i = 0; i < 20000; i++) y = (y * 0.999).Tanh();
        Assert.Equal(1, Kernels(() => y.Eval()));
        var v = x.ToArray<float>();
        for (int i = 0; i < 20000; i++) for (int j = 0; j < v.Length; j++) v[j] = MathF.Tanh(v[j] * 0.999f);
        Close.AssertAll(v, y.ToArray<float>(), 1e-4, "20000-op chain");
    }
}
