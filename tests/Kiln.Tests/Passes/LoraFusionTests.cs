// LoRA fusion: the forms users write (scale on the product, on A, on B, none; bias; batched x; dropout on the
// branch) become one lora_linear kernel and give the values of the unfused twin; non-LoRA lookalikes are left alone.
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
    /// <summary>An inverted-dropout mask as LoraLinear makes it (a data leaf of 0 and 1/(1-p)), p = 0.25.</summary>
    private static readonly Tensor Mask = Tensor.FromArray(Enumerable.Range(0, 2 * 16 * 64).Select(i => i * 7919 % 4 == 0 ? 0f : 1 / 0.75f).ToArray(), [2, 16, 64]);

    public static TheoryData<string> Forms() => new() { "product", "left", "onA", "onB", "none", "bias", "biasFirst", "transposedW",
        "dropout", "dropoutMaskFirst", "dropoutDividedBias", "dropoutBiasFirst" };

    private static Tensor Build(string form) => form switch
    {
        "product" => X.MatMul(W) + X.MatMul(A).MatMul(B) * 2.0,
        "left" => (X.MatMul(A).MatMul(B) * 0.5) + X.MatMul(W),
        "onA" => X.MatMul(W) + X.MatMul(A * 4.0).MatMul(B),
        "onB" => X.MatMul(W) + X.MatMul(A).MatMul(B * 0.25),
        "none" => X.MatMul(W) + X.MatMul(A).MatMul(B),
        "bias" => X.MatMul(W) + X.MatMul(A).MatMul(B) * 2.0 + Bias,
        "biasFirst" => Bias + (X.MatMul(W) + X.MatMul(A).MatMul(B) * 2.0),
        "dropout" => X.MatMul(W) + (X * Mask).MatMul(A).MatMul(B) * 2.0,
        "dropoutMaskFirst" => X.MatMul(W) + (Mask * X).MatMul(A * 0.5).MatMul(B),
        "dropoutDividedBias" => X.MatMul(W) + ((X * (Mask * 0.75)) / 0.75).MatMul(A).MatMul(B) * 2.0 + Bias,
        "dropoutBiasFirst" => Bias + (X.MatMul(W) + (X * Mask).MatMul(A).MatMul(B) * 2.0),
        _ => X.MatMul(W.T.T) + X.MatMul(A).MatMul(B) * 3.0,
    };

    [Theory]
    [MemberData(nameof(Forms))]
    public void FormsUsersWriteBecomeOneLoraOp(string form)
    {
        var y = Build(form);
        var opt = GraphOptimizer.Optimize([y.Node]).Outputs[0];
        Assert.Equal("lora_linear", opt.Op.Name);
        // With dropout the branch input h = x·mask is computed first (one elementwise kernel), then read by the op.
        Assert.Equal(form.StartsWith("dropout") ? 2 : 1, KernelCount.Of(() => y.Eval()));
        var twin = Build(form);
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll(twin.ToArray<double>(), y.ToArray<double>(), 2e-5, $"lora {form}");
    }

    [Fact]
    public void LookalikesStayUnfused()
    {
        var other = Tensor.RandomNormal([2, 16, 64], seed: 9);
        // the LoRA branch reads another input than the base product (also through a "mask")
        var y = X.MatMul(W) + other.MatMul(A).MatMul(B) * 2.0;
        Assert.NotEqual("lora_linear", GraphOptimizer.Optimize([y.Node]).Outputs[0].Op.Name);
        var y2 = X.MatMul(W) + (other * Mask).MatMul(A).MatMul(B) * 2.0;
        Assert.NotEqual("lora_linear", GraphOptimizer.Optimize([y2.Node]).Outputs[0].Op.Name);
        var y3 = X.MatMul(W) + (X + Mask).MatMul(A).MatMul(B) * 2.0;   // not a mask product
        Assert.NotEqual("lora_linear", GraphOptimizer.Optimize([y3.Node]).Outputs[0].Op.Name);
        // scaled by a tensor, not a scalar constant
        var s = Tensor.RandomNormal([48], seed: 10);
        var z = X.MatMul(W) + X.MatMul(A).MatMul(B) * s;
        Assert.NotEqual("lora_linear", GraphOptimizer.Optimize([z.Node]).Outputs[0].Op.Name);
        Assert.Equal("add", GraphOptimizer.Optimize([z.Node], name => name is not ("lora" or "elementwise" or "residual")).Outputs[0].Op.Name);
    }

    [Fact]
    public void TheBranchReadsItsOwnInputInTheFusedKernel()
    {
        // The dropout mask zeroes some of x's features for the branch only: the fused op must not read x there.
        var y = X.MatMul(W) + (X * Mask).MatMul(A).MatMul(B) * 2.0;
        var fused = GraphOptimizer.Optimize([y.Node]).Outputs[0];
        Assert.Equal("lora_linear", fused.Op.Name);
        Assert.Equal(5, fused.Inputs.Count);   // x, W, A, B, h
        double[] xs = X.ToArray<double>(), ms = Mask.ToArray<double>(), w = W.ToArray<double>(), a = A.ToArray<double>(), b = B.ToArray<double>();
        var got = y.ToArray<double>();
        for (int row = 0; row < 32; row += 5)
            for (int o = 0; o < 48; o += 7)
            {
                double e = 0;
                for (int k = 0; k < 64; k++) e += xs[row * 64 + k] * w[k * 48 + o];
                for (int j = 0; j < 8; j++)
                {
                    double ha = 0;
                    for (int k = 0; k < 64; k++) ha += xs[row * 64 + k] * ms[row * 64 + k] * a[k * 8 + j];
                    e += 2.0 * ha * b[j * 48 + o];
                }
                Assert.True(Math.Abs(got[row * 48 + o] - e) <= 1e-4 * (1 + Math.Abs(e)), $"[{row},{o}] {got[row * 48 + o]} vs {e}");
            }
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
