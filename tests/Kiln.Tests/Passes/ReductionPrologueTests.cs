// A fused elementwise group read only by a sum/mean (any axes) runs as one fused_reduce kernel, equal to the unfused graph.
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
        var mid = (x * y + 1).Sum([0]);   // a leading-axis reduction: one kernel too, checked against loops
        Assert.Equal("fused_reduce", GraphOptimizer.Optimize([mid.Node]).Outputs[0].Op.Name);
        var xs = x.ToArray<double>(); var ys = y.ToArray<double>(); var got = mid.ToArray<double>();
        for (int j = 0; j < 70; j++)
        {
            double e = 0;
            for (int i = 0; i < 300; i++) e += xs[i * 70 + j] * ys[i * 70 + j] + 1;
            Assert.Equal(e, got[j], 1e-9);
        }
    }

    [Theory]
    [InlineData(new[] { 0 }, false, false)]
    [InlineData(new[] { 0, 1 }, false, false)]   // a broadcast weight's gradient: sum over batch and time
    [InlineData(new[] { 1 }, true, false)]
    [InlineData(new[] { 0, 1 }, true, true)]
    [InlineData(new[] { 1 }, false, true)]
    [InlineData(new[] { 0, 2 }, false, false)]   // the last axis with others: each row's sum added to its group
    [InlineData(new[] { 1, 2 }, true, true)]
    public void PartialReductionsAreOneKernelAndMatchLoops(int[] axes, bool mean, bool keepDim)
    {
        // 150 rows per output group for [0, 1]: more than one chunk of rows, so chunked partial sums are exercised.
        var x = Tensor.RandomNormal([10, 15, 40], 8); var y = Tensor.RandomNormal([15, 1], 9); var w = Tensor.RandomNormal([40], 10);
        Tensor Group() => (x * y + w).Tanh() * 2;
        Tensor Build() => mean ? Group().Mean(axes, keepDim) : Group().Sum(axes, keepDim);
        var fused = Build();
        Assert.Equal("fused_reduce", GraphOptimizer.Optimize([fused.Node]).Outputs[0].Op.Name);
        Assert.Equal(1, KernelCount.Of(() => fused.Eval()));
        var twin = Build();
        Evaluator.Evaluate([twin.Node], optimize: false);   // the group materialised, then the plain reduction
        Assert.Equal(twin.Shape, fused.Shape);
        // Independent reference: loops in double over the group's values.
        var e = Group().ToArray<float>();
        int[] dims = [10, 15, 40];
        var outDims = dims.Select((d, i) => axes.Contains(i) ? 1 : d).ToArray();
        var expected = new double[outDims.Aggregate(1, (p, d) => p * d)];
        int count = axes.Aggregate(1, (p, a) => p * dims[a]);
        for (int i = 0; i < 10; i++) for (int j = 0; j < 15; j++) for (int k = 0; k < 40; k++)
        {
            int oi = axes.Contains(0) ? 0 : i, oj = axes.Contains(1) ? 0 : j, ok = axes.Contains(2) ? 0 : k;
            expected[(oi * outDims[1] + oj) * outDims[2] + ok] += e[(i * 15 + j) * 40 + k] / (mean ? (double)count : 1);
        }
        string what = $"axes [{string.Join(",", axes)}] mean={mean} keep={keepDim}";
        Close.AssertAll(expected, fused.ToArray<double>(), 1e-5, what + " fused");
        Close.AssertAll(expected, twin.ToArray<double>(), 1e-5, what + " plain");
        Assert.Equal(twin.ToArray<float>(), fused.ToArray<float>());   // one summation code for both: the same bits
    }

    [Fact]
    public void TheLastAxisWithOthersMatchesLoopsWithManyRowsPerGroup()
    {
        // sum over [0, 2] of (6·70, 5, 40): 420 rows per output, so chunked partial sums are exercised.
        var x = Tensor.RandomNormal([420, 5, 40], 13);
        var r = (x * 2).Exp().Sum([0, 2]);
        Assert.Equal("fused_reduce", GraphOptimizer.Optimize([r.Node]).Outputs[0].Op.Name);
        var v = x.ToArray<float>(); var got = r.ToArray<float>();
        for (int j = 0; j < 5; j++)
        {
            double e = 0;
            for (int i = 0; i < 420; i++) for (int k = 0; k < 40; k++) e += Math.Exp(2.0 * v[(i * 5 + j) * 40 + k]);
            Assert.Equal(e, got[j], 1e-5 * e);
        }
    }

    [Fact]
    public void ManyRowsPerGroupMatchLoopsAndRepeatBitForBit()
    {
        // 2112 rows per output group: 33 chunks summed in a fixed order, whatever the threads did.
        var x = Tensor.RandomNormal([64, 33, 24], 11); var y = Tensor.RandomNormal([24], 12);
        float[] Run() => ((x * y).Exp() - 1).Sum([0, 1]).ToArray<float>();
        var first = Run();
        for (int i = 0; i < 5; i++) Assert.Equal(first, Run());
        var xs = x.ToArray<float>(); var ys = y.ToArray<float>();
        for (int j = 0; j < 24; j++)
        {
            double e = 0;
            for (int r = 0; r < 64 * 33; r++) e += Math.Exp((double)(xs[r * 24 + j] * ys[j])) - 1;
            Assert.True(Math.Abs(e - first[j]) <= 1e-4 * Math.Abs(e) + 1e-3, $"[{j}]: {e} vs {first[j]}");
        }
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
