// LoRA fusion: the forms users write (scale on the product, on A, on B, none; bias; batched x) become one
// lora_linear kernel and give the values of the unfused twin; non-LoRA lookalikes are left alone.
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class LoraFusionTests
{
    private static readonly Tensor X = Tensor.RandomNormal([2, 16, 64], seed: 1);
    private static readonly Tensor W = Tensor.RandomNormal([64, 48], seed: 2);
    private static readonly Tensor A = Tensor.RandomNormal([64, 8], seed: 3);
    private static readonly Tensor B = Tensor.RandomNormal([8, 48], seed: 4);
    private static readonly Tensor Bias = Tensor.RandomNormal([48], seed: 5);

    public static TheoryData<string> Forms() => new() { "product", "left", "onA", "onB", "none", "bias", "biasFirst", "transposedW" };

    private static Tensor Build(string form) => form switch
    {
        "product" => X.MatMul(W) + X.MatMul(A).MatMul(B) * 2.0,
        "left" => (X.MatMul(A).MatMul(B) * 0.5) + X.MatMul(W),
        "onA" => X.MatMul(W) + X.MatMul(A * 4.0).MatMul(B),
        "onB" => X.MatMul(W) + X.MatMul(A).MatMul(B * 0.25),
        "none" => X.MatMul(W) + X.MatMul(A).MatMul(B),
        "bias" => X.MatMul(W) + X.MatMul(A).MatMul(B) * 2.0 + Bias,
        "biasFirst" => Bias + (X.MatMul(W) + X.MatMul(A).MatMul(B) * 2.0),
        _ => X.MatMul(W.T.T) + X.MatMul(A).MatMul(B) * 3.0,
    };

    [Theory]
    [MemberData(nameof(Forms))]
    public void FormsUsersWriteBecomeOneLoraOp(string form)
    {
        var y = Build(form);
        var opt = GraphOptimizer.Optimize([y.Node]).Outputs[0];
        Assert.Equal("lora_linear", opt.Op.Name);
        Assert.Equal(1, KernelCount.Of(() => y.Eval()));
        var twin = Build(form);
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll(twin.ToArray<double>(), y.ToArray<double>(), 2e-5, $"lora {form}");
    }

    [Fact]
    public void LookalikesStayUnfused()
    {
        var other = Tensor.RandomNormal([2, 16, 64], seed: 9);
        // the LoRA branch reads another input than the base product
        var y = X.MatMul(W) + other.MatMul(A).MatMul(B) * 2.0;
        Assert.NotEqual("lora_linear", GraphOptimizer.Optimize([y.Node]).Outputs[0].Op.Name);
        // scaled by a tensor, not a scalar constant
        var s = Tensor.RandomNormal([48], seed: 10);
        var z = X.MatMul(W) + X.MatMul(A).MatMul(B) * s;
        Assert.NotEqual("lora_linear", GraphOptimizer.Optimize([z.Node]).Outputs[0].Op.Name);
        Assert.Equal("add", GraphOptimizer.Optimize([z.Node], name => name is not ("lora" or "elementwise" or "residual")).Outputs[0].Op.Name);
    }

    [Fact]
    public void EmptyInputFeaturesGiveZeros()
    {
        var x = Tensor.RandomNormal([5, 0], seed: 11);
        var y = x.MatMul(Tensor.Zeros([0, 4])) + x.MatMul(Tensor.Zeros([0, 2])).MatMul(Tensor.RandomNormal([2, 4], seed: 12)) * 2.0;
        Assert.Equal("lora_linear", GraphOptimizer.Optimize([y.Node]).Outputs[0].Op.Name);
        Assert.Equal([5, 4], y.Shape);
        Assert.Equal(new float[20], y.ToArray<float>());
    }
}
