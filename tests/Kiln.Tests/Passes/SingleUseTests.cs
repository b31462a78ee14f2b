// A matmul whose result has other readers (typically the backward pass) is not folded into a bigger op:
// the other readers would recompute it and the GEMM would run twice.
using Kiln.Graph;
using Kiln.Passes;

namespace Kiln.Tests.Passes;

using Ops = Kiln.Ops;

public class SingleUseTests
{
    private static int Gemms(params Tensor[] outputs)
    {
        var opt = GraphOptimizer.Optimize(outputs.Select(t => t.Node).ToArray()).Outputs;
        return GraphWalk.Topological(opt, n => n.IsRealised).Count(n => n.Op.Name is "matmul" or "matmul_epilogue" or "swiglu" or "lora_linear");
    }

    private static readonly Tensor X = Tensor.RandomNormal([8, 16], 1), W = Tensor.RandomNormal([16, 32], 2), W2 = Tensor.RandomNormal([16, 32], 3), B = Tensor.RandomNormal([32], 4);

    [Fact]
    public void AnEpilogueDoesNotSwallowASharedMatmul()
    {
        var a = X.MatMul(W);
        Assert.Equal(1, Gemms(a.Relu(), a * 2));
        Assert.Equal(1, Gemms(X.MatMul(W).Relu()));   // alone it still fuses (one epilogue kernel)
    }

    [Fact]
    public void TrainingGraphsKeepOneGemmPerForwardProduct()
    {
        // forward silu(x·Wg)·(x·Wu); the backward reads both products, so SwiGLU fusion would duplicate them
        Tensor Loss(Tensor wg, Tensor wu) => (X.MatMul(wg).Silu() * X.MatMul(wu)).Square().Sum();
        var loss = Loss(W, W2);
        var g = Autograd.Grad(loss, W, W2);
        int withGrads = Gemms([loss, .. g]);
        Assert.Equal(2 + 2, withGrads);   // two forward products + one weight-gradient GEMM per weight
        Assert.Equal(1, Gemms(X.MatMul(W).Silu() * X.MatMul(W2)));   // inference: one swiglu op
    }

    [Fact]
    public void ValuesAreUnchanged()
    {
        var a = X.MatMul(W) + B;
        var (r, s) = (a.Relu(), a * 2);
        Tensor.Eval(r, s);
        var a2 = X.MatMul(W) + B;
        var (r2, s2) = (a2.Relu(), a2 * 2);
        Kiln.Runtime.Evaluator.Evaluate([r2.Node, s2.Node], optimize: false);
        Assert.Equal(r2.ToArray<float>(), r.ToArray<float>());
        Assert.Equal(s2.ToArray<float>(), s.ToArray<float>());
    }
}
