// Attention written as primitives (the way Llama and GPT code spells it) becomes one attention kernel and
// gives the values of the primitives run as built.
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

using Ops = Kiln.Ops;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class AttentionFusionTests
{
    private static void Check(Func<Tensor> build, bool causal, double scale)
    {
        var fused = build();
        var opt = GraphOptimizer.Optimize([fused.Node]).Outputs[0];
        Assert.Equal("attention", opt.Op.Name);
        var attrs = (Kiln.Graph.AttentionAttrs)opt.Attrs!;
        Assert.Equal(causal, attrs.Causal);
        Assert.Equal(scale, attrs.Scale, 12);
        Assert.Equal(1, KernelCount.Of(() => fused.Eval()));
        var twin = build();
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll(twin.ToArray<double>(), fused.ToArray<double>(), 2e-5, "attention");
        var off = GraphOptimizer.Optimize([build().Node], name => name != "attention").Outputs[0];
        Assert.NotEqual("attention", off.Op.Name);
    }

    private static readonly Tensor Q = Tensor.RandomNormal([2, 4, 9, 16], 1), K = Tensor.RandomNormal([2, 4, 9, 16], 2), V = Tensor.RandomNormal([2, 4, 9, 8], 3);

    [Fact]
    public void CausalLlamaStyleIsOneKernel() =>
        Check(() => (Q.MatMul(K.Transpose(2, 3)) / Math.Sqrt(16)).Triangle(true, 0, double.NegativeInfinity).Softmax(-1).MatMul(V), true, 0.25);

    [Fact]
    public void ScaleOnQueriesAndNoMaskIsOneKernel() =>
        Check(() => (Q * 0.125).MatMul(K.T).Softmax(-1).MatMul(V), false, 0.125);

    [Fact]
    public void SoftmaxWrittenByHandInsideAttentionIsStillOneKernel()
    {
        Tensor Build()
        {
            var s = Q.MatMul(K.T) * 0.25;
            var e = (s - s.Max([-1], keepDim: true)).Exp();
            return (e / e.Sum([-1], keepDim: true)).MatMul(V);
        }
        Check(Build, false, 0.25);
    }

    [Fact]
    public void GroupedQueryAttentionBroadcastIsOneKernel()
    {
        var q = Tensor.RandomNormal([2, 2, 3, 5, 8], 4); var k = Tensor.RandomNormal([2, 2, 1, 7, 8], 5); var v = Tensor.RandomNormal([2, 2, 1, 7, 8], 6);
        Check(() => (q.MatMul(k.T) * 0.3).Triangle(true, 2, double.NegativeInfinity).Softmax(-1).MatMul(v), true, 0.3);
    }

    [Fact]
    public void AMaskThatIsNotBottomRightCausalIsLeftAlone()
    {
        var s = (Q.MatMul(K.T) * 0.25).Triangle(true, -1, double.NegativeInfinity).Softmax(-1).MatMul(V);
        Assert.NotEqual("attention", GraphOptimizer.Optimize([s.Node]).Outputs[0].Op.Name);
    }
}
