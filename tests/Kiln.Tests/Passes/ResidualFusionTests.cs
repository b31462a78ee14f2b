// x·W + r (a residual connection) runs as one matmul_residual kernel; values and gradients equal the unfused graph.
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

using Ops = Kiln.Ops;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class ResidualFusionTests
{
    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void ResidualAddIsOneKernel(DType dt)
    {
        var x = Tensor.RandomNormal([3, 17, 40], 1, dtype: dt); var w = Tensor.RandomNormal([40, 24], 2, dtype: dt);
        var r = Tensor.RandomNormal([3, 17, 24], 3, dtype: dt);
        Tensor Build() => r + x.MatMul(w);
        var fused = Build();
        Assert.Equal("matmul_residual", GraphOptimizer.Optimize([fused.Node]).Outputs[0].Op.Name);
        Assert.Equal(1, KernelCount.Of(() => fused.Eval()));
        var twin = Build();
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll(twin.ToArray<double>(), fused.ToArray<double>(), dt == DType.Float64 ? 1e-12 : 1e-5, "residual");
    }

    [Fact]
    public void TransposedWeightAndStridedResidualStayCorrect()
    {
        var x = Tensor.RandomNormal([20, 33], 4); var wt = Tensor.RandomNormal([24, 33], 5); var rt = Tensor.RandomNormal([24, 20], 6);
        var fused = x.MatMul(wt.T) + rt.T;
        var twin = x.MatMul(wt.T) + rt.T;
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll(twin.ToArray<double>(), fused.ToArray<double>(), 1e-5, "strided");
    }

    [Fact]
    public void GradientsThroughAFusedResidualMatchTheUnfusedGraph()
    {
        var x = Tensor.RandomNormal([8, 16], 7); var w = Tensor.RandomNormal([16, 16], 8); var up = Tensor.RandomNormal([8, 16], 9);
        Tensor Loss(Tensor xi, Tensor wi) => ((xi + xi.MatMul(wi)).Tanh() * up).Sum();
        var g = Autograd.Grad(Loss(x, w), x, w);
        var gTwin = Autograd.Grad(Loss(x, w), x, w);
        Tensor.Eval(g);
        Evaluator.Evaluate(gTwin.Select(t => t.Node).ToArray(), optimize: false);
        for (int i = 0; i < 2; i++) Close.AssertAll(gTwin[i].ToArray<double>(), g[i].ToArray<double>(), 1e-5, $"grad {i}");
    }

    [Fact]
    public void ASharedProductIsNotFolded()
    {
        var x = Tensor.RandomNormal([8, 16], 1); var w = Tensor.RandomNormal([16, 16], 2); var r = Tensor.RandomNormal([8, 16], 3);
        var p = x.MatMul(w);
        var opt = GraphOptimizer.Optimize([(p + r).Node, (p * 2).Node]).Outputs;
        Assert.NotEqual("matmul_residual", opt[0].Op.Name);
    }
}
