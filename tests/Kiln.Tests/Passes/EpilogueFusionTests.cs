// Matmul epilogues: bias and/or activation after a matmul become one kernel with the unfused twin's values.
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class EpilogueFusionTests
{
    private static readonly Tensor X = Tensor.RandomNormal([3, 20, 48], seed: 1);
    private static readonly Tensor W = Tensor.RandomNormal([48, 40], seed: 2);
    private static readonly Tensor B = Tensor.RandomNormal([40], seed: 3);

    public static TheoryData<string> Forms() => new() { "bias", "biasFirst", "relu", "gelu", "geluTanh", "silu", "biasRelu", "biasSilu", "biasGeluTanh" };

    private static Tensor Build(string form) => form switch
    {
        "bias" => X.MatMul(W) + B,
        "biasFirst" => B + X.MatMul(W),
        "relu" => X.MatMul(W).Relu(),
        "gelu" => X.MatMul(W).Gelu(),
        "geluTanh" => X.MatMul(W).Gelu(GeluApproximation.Tanh),
        "silu" => X.MatMul(W).Silu(),
        "biasRelu" => (X.MatMul(W) + B).Relu(),
        "biasSilu" => (X.MatMul(W) + B).Silu(),
        _ => (B + X.MatMul(W)).Gelu(GeluApproximation.Tanh),
    };

    [Theory]
    [MemberData(nameof(Forms))]
    public void EpiloguesRunInTheMatmulKernel(string form)
    {
        var y = Build(form);
        Assert.Equal("matmul_epilogue", GraphOptimizer.Optimize([y.Node]).Outputs[0].Op.Name);
        Assert.Equal(1, KernelCount.Of(() => y.Eval()));
        var twin = Build(form);
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll(twin.ToArray<double>(), y.ToArray<double>(), 1e-5, $"epilogue {form}");
    }

    [Fact]
    public void BiasOfAnotherShapeIsNotAnEpilogue()
    {
        var b2 = Tensor.RandomNormal([20, 40], seed: 4);
        var y = X.MatMul(W) + b2;
        Assert.NotEqual("matmul_epilogue", GraphOptimizer.Optimize([y.Node]).Outputs[0].Op.Name);
        var twin = X.MatMul(W) + b2;
        Evaluator.Evaluate([twin.Node], optimize: false);
        Assert.Equal(twin.ToArray<float>(), y.ToArray<float>());
    }
}

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class SwiGluFusionTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SwiGluIsOneKernel(bool upFirst)
    {
        foreach (var dt in new[] { DType.Float32, DType.Float64 })
        {
            var x = Tensor.RandomNormal([2, 9, 32], seed: 1, dtype: dt);
            var wg = Tensor.RandomNormal([32, 44], seed: 2, dtype: dt);
            var wu = Tensor.RandomNormal([32, 44], seed: 3, dtype: dt);
            Tensor Build() => upFirst ? x.MatMul(wu) * x.MatMul(wg).Silu() : x.MatMul(wg).Silu() * x.MatMul(wu);
            var y = Build();
            Assert.Equal("swiglu", GraphOptimizer.Optimize([y.Node]).Outputs[0].Op.Name);
            Assert.Equal(1, KernelCount.Of(() => y.Eval()));
            var twin = Build();
            Evaluator.Evaluate([twin.Node], optimize: false);
            Close.AssertAll(twin.ToArray<double>(), y.ToArray<double>(), dt == DType.Float32 ? 1e-5 : 1e-12, $"swiglu {dt.ShortName()}");
        }
    }
}
