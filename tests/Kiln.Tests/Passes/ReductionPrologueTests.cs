// A fused elementwise group read only by a full sum/mean runs as one fused_reduce kernel, equal to the unfused graph.
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

using Ops = Kiln.Ops;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class ReductionPrologueTests
{
    private static readonly Tensor X = Tensor.RandomNormal([37, 129], 1), Y = Tensor.RandomNormal([37, 129], 2), B = Tensor.RandomNormal([129], 3);

    [Theory]
    [InlineData("sum")]
    [InlineData("mean")]
    [InlineData("mean keepdim")]
    public void GroupThenFullReductionIsOneKernel(string kind)
    {
        Tensor Build()
        {
            var e = ((X - Y * 0.5).Square() + B).Tanh();
            return kind == "sum" ? e.Sum() : e.Mean(keepDim: kind.EndsWith("keepdim"));
        }
        var fused = Build();
        Assert.Equal("fused_reduce", GraphOptimizer.Optimize([fused.Node]).Outputs[0].Op.Name);
        Assert.Equal(1, KernelCount.Of(() => fused.Eval()));
        var twin = Build();
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll(twin.ToArray<double>(), fused.ToArray<double>(), 1e-5, kind);
        Assert.Equal(twin.Shape, fused.Shape);
    }

    [Fact]
    public void AGroupReadElsewhereIsNotFolded()
    {
        var e = (X * Y).Exp();
        var s = e.Sum();
        var opt = GraphOptimizer.Optimize([s.Node, e.Node]).Outputs;
        Assert.NotEqual("fused_reduce", opt[0].Op.Name);
        Tensor.Eval(s, e);
        Assert.Equal(e.ToArray<float>().Sum(v => (double)v), s.Item<float>(), 1e-3 * Math.Abs(s.Item<float>()));
    }

    [Fact]
    public void DoublePrecisionAndAPartialReductionStayCorrect()
    {
        var x = Tensor.RandomNormal([300, 70], 4, dtype: DType.Float64); var y = Tensor.RandomNormal([300, 70], 5, dtype: DType.Float64);
        var full = (x * y + 1).Sum();
        var expected = x.ToArray<double>().Zip(y.ToArray<double>(), (a, b) => a * b + 1).Sum();
        Assert.Equal(expected, full.Item<double>(), 1e-9);
        var mid = (x * y + 1).Sum([0]);   // a leading-axis reduction: left as group + sum
        Assert.NotEqual("fused_reduce", GraphOptimizer.Optimize([mid.Node]).Outputs[0].Op.Name);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void RowReductionsAreOneKernel(bool mean, bool keepDim)
    {
        var x = Tensor.RandomNormal([5, 7, 300], 6); var y = Tensor.RandomNormal([300], 7);
        Tensor Build() { var e = (x * y - 0.5).Exp(); return mean ? e.Mean([-1], keepDim) : e.Sum([-1], keepDim); }
        var fused = Build();
        Assert.Equal("fused_reduce", GraphOptimizer.Optimize([fused.Node]).Outputs[0].Op.Name);
        Assert.Equal(1, KernelCount.Of(() => fused.Eval()));
        var twin = Build();
        Evaluator.Evaluate([twin.Node], optimize: false);
        Assert.Equal(twin.Shape, fused.Shape);
        Close.AssertAll(twin.ToArray<double>(), fused.ToArray<double>(), 1e-5, $"rows mean={mean} keep={keepDim}");
    }
}
