// Softmax, log-softmax and RMSNorm written as primitives become one row kernel each, give the values of
// the primitives run as built (their reference twin), and stay primitives with fusion switched off.
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

using Ops = Kiln.Ops;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class RecognitionTests
{
    private static Tensor SoftmaxByHand(Tensor x, int axis)
    {
        var e = (x - x.Max([axis], keepDim: true)).Exp();
        return e / e.Sum([axis], keepDim: true);
    }

    private static Tensor LogSoftmaxByHand(Tensor x, int axis)
    {
        var d = x - x.Max([axis], keepDim: true);
        return d - d.Exp().Sum([axis], keepDim: true).Log();
    }

    private static Tensor RmsNormByHand(Tensor x, Tensor w, double eps) =>
        x * (x.Square().Mean([-1], keepDim: true) + eps).Rsqrt() * w;

    private static void Check(Func<Tensor> build, string op, double tol)
    {
        var fused = build();
        var opt = GraphOptimizer.Optimize([fused.Node]).Outputs[0];
        Assert.Equal(op, opt.Op.Name);
        Assert.Equal(1, KernelCount.Of(() => fused.Eval()));
        var twin = build();
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll(twin.ToArray<double>(), fused.ToArray<double>(), tol, op);
        // With fusion switched off the primitives stay.
        var off = GraphOptimizer.Optimize([build().Node], name => name is not ("softmax" or "rmsnorm" or "layernorm" or "elementwise")).Outputs[0];
        Assert.NotEqual(op, off.Op.Name);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(1)]
    public void SoftmaxWrittenAsPrimitivesIsOneKernel(int axis)
    {
        var x = Tensor.RandomNormal([4, 33, 65], seed: 1);
        Check(() => SoftmaxByHand(x, axis), "softmax", 2e-6);
    }

    [Fact]
    public void LogSoftmaxWrittenAsPrimitivesIsOneKernel()
    {
        var x = Tensor.RandomNormal([6, 129], seed: 2, dtype: DType.Float64);
        Check(() => LogSoftmaxByHand(x, -1), "log_softmax", 1e-12);
    }

    [Fact]
    public void RmsNormWrittenAsPrimitivesIsOneKernel()
    {
        var x = Tensor.RandomNormal([3, 16, 64], seed: 3);
        var w = Tensor.RandomNormal([64], seed: 4);
        Check(() => RmsNormByHand(x, w, 1e-6), "rms_norm", 2e-6);
        Check(() => w * (x * (x * x).Mean([-1], keepDim: true).Add(Tensor.Scalar(1e-5)).Rsqrt()), "rms_norm", 2e-6);
    }

    private static Tensor LayerNormByHand(Tensor x, Tensor w, Tensor b, double eps)
    {
        var xc = x - x.Mean([-1], keepDim: true);
        return xc * (xc.Square().Mean([-1], keepDim: true) + eps).Rsqrt() * w + b;
    }

    [Fact]
    public void LayerNormWrittenAsPrimitivesIsOneKernel()
    {
        var x = Tensor.RandomNormal([3, 16, 64], seed: 7);
        var w = Tensor.RandomNormal([64], seed: 8);
        var b = Tensor.RandomNormal([64], seed: 9);
        Check(() => LayerNormByHand(x, w, b, 1e-5), "layer_norm", 3e-6);
        Check(() => b + w * ((x - x.Mean([-1], keepDim: true)) * ((x - x.Mean([-1], keepDim: true)) * (x - x.Mean([-1], keepDim: true))).Mean([-1], keepDim: true).Add(Tensor.Scalar(1e-6)).Rsqrt()), "layer_norm", 3e-6);
    }

    [Fact]
    public void LookalikesAreLeftAlone()
    {
        var x = Tensor.RandomNormal([4, 8], seed: 5);
        var y = Tensor.RandomNormal([4, 8], seed: 6);
        // max of another tensor: not a softmax
        var e = (x - y.Max([1], keepDim: true)).Exp();
        Assert.NotEqual("softmax", GraphOptimizer.Optimize([(e / e.Sum([1], keepDim: true)).Node]).Outputs[0].Op.Name);
        // sum over another axis than the max
        var e2 = (x - x.Max([1], keepDim: true)).Exp();
        Assert.NotEqual("softmax", GraphOptimizer.Optimize([(e2 / e2.Sum([0], keepDim: true)).Node]).Outputs[0].Op.Name);
        // rms over the wrong axis
        var r = x * (x.Square().Mean([0], keepDim: true) + 1e-6).Rsqrt() * Tensor.Ones([8]);
        Assert.NotEqual("rms_norm", GraphOptimizer.Optimize([r.Node]).Outputs[0].Op.Name);
    }
}
