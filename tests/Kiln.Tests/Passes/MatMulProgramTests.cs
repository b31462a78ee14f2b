// Producer epilogues: a fused elementwise group reading a matmul's product (read by nothing else) runs over the
// product's buffer in place as one matmul_program kernel, with the unfused twin's values.
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class MatMulProgramTests
{
    private static readonly Tensor X = Tensor.RandomNormal([3, 20, 48], seed: 1);
    private static readonly Tensor W = Tensor.RandomNormal([48, 40], seed: 2, std: 0.2);
    private static readonly Tensor B = Tensor.RandomNormal([40], seed: 3);
    private static readonly Tensor R = Tensor.RandomNormal([3, 20, 40], seed: 4);

    public static TheoryData<string> Forms() => new() { "tanhScale", "biasTanhResidual", "square", "siluInPlace", "productTwice", "reluBias", "broadcastRow" };

    private static Tensor Build(string form, Tensor x, Tensor w) => form switch
    {
        "tanhScale" => x.MatMul(w).Tanh() * 0.5,
        "biasTanhResidual" => (x.MatMul(w) + B).Tanh() * 0.5 + R,      // bias in the GEMM's epilogue, then the program
        "square" => (x.MatMul(w) - R).Square(),
        "siluInPlace" => x.MatMul(w).Exp().Silu(),                         // SiLU's span map uses its output as scratch
        "productTwice" => x.MatMul(w) * x.MatMul(w).Exp() + 1,              // CSE: one product read twice by the group
        "reluBias" => (x.MatMul(w) + B).Relu() * R,                         // a whole matmul_epilogue (bias + relu) feeds it
        _ => x.MatMul(w) / B * 0.5,                                        // a row-broadcast input inside the program
    };

    [Theory]
    [MemberData(nameof(Forms))]
    public void TheGroupRunsAsTheMatmulsEpilogue(string form)
    {
        var y = Build(form, X, W);
        Assert.Equal("matmul_program", GraphOptimizer.Optimize([y.Node]).Outputs[0].Op.Name);
        Assert.Equal(1, KernelCount.Of(() => y.Eval()));
        var twin = Build(form, X, W);
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll(twin.ToArray<double>(), y.ToArray<double>(), 1e-5, $"program {form}");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheInterpreterAndTheCompiledLoopAgree(bool codegen)
    {
        // In place through both runners (the interpreter reads the product through a copy of each block).
        FusedKernelOverride(codegen, () =>
        {
            foreach (var form in new[] { "siluInPlace", "biasTanhResidual" })
            {
                var y = Build(form, X, W);
                var twin = Build(form, X, W);
                Evaluator.Evaluate([twin.Node], optimize: false);
                Close.AssertAll(twin.ToArray<double>(), y.ToArray<double>(), 1e-5, $"{form} codegen={codegen}");
            }
        });
    }

    private static void FusedKernelOverride(bool codegen, Action body)
    {
        Kiln.Cpu.FusedKernel.CodegenOverride.Value = codegen;
        try { body(); } finally { Kiln.Cpu.FusedKernel.CodegenOverride.Value = null; }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(13)]
    [InlineData(1027)]
    public void SizesThatAreNoWholeNumberOfVectorsRunInPlaceCorrectly(int rows)
    {
        // rows × 13 outputs: a partial last vector, which the compiled loop would otherwise recompute from results.
        var x = Tensor.RandomNormal([rows, 48], 20 + rows); var w = Tensor.RandomNormal([48, 13], 21, std: 0.2);
        foreach (bool codegen in new[] { true, false })
            FusedKernelOverride(codegen, () =>
            {
                var y = (x.MatMul(w) * 3).Sin() + x.MatMul(w);   // CSE: the product read twice
                var xs = x.ToArray<float>(); var ws = w.ToArray<float>(); var got = y.ToArray<float>();
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < 13; j++)
                    {
                        double p = 0;
                        for (int k = 0; k < 48; k++) p += (double)xs[i * 48 + k] * ws[k * 13 + j];
                        Assert.True(Math.Abs(Math.Sin(3 * p) + p - got[i * 13 + j]) < 1e-4, $"rows {rows} codegen={codegen} [{i},{j}]: {Math.Sin(3 * p) + p} vs {got[i * 13 + j]}");
                    }
            });
    }

    [Fact]
    public void AProductReadElsewhereIsNotFolded()
    {
        var p = X.MatMul(W);
        var y = p.Tanh() + 1;
        var opt = GraphOptimizer.Optimize([y.Node, p.Node]).Outputs;
        Assert.NotEqual("matmul_program", opt[0].Op.Name);
        Tensor.Eval(y, p);
        var pv = p.ToArray<float>(); var yv = y.ToArray<float>();
        for (int i = 0; i < pv.Length; i++) Assert.Equal(MathF.Tanh(pv[i]) + 1, yv[i], 1e-5f);
    }

    [Fact]
    public void DoublePrecisionMatchesLoops()
    {
        var x = Tensor.RandomNormal([7, 5], 5, dtype: DType.Float64); var w = Tensor.RandomNormal([5, 3], 6, dtype: DType.Float64);
        var y = (x.MatMul(w) * 2 - 1).Exp();
        Assert.Equal("matmul_program", GraphOptimizer.Optimize([y.Node]).Outputs[0].Op.Name);
        var xs = x.ToArray<double>(); var ws = w.ToArray<double>(); var got = y.ToArray<double>();
        for (int i = 0; i < 7; i++)
            for (int j = 0; j < 3; j++)
            {
                double s = 0;
                for (int k = 0; k < 5; k++) s += xs[i * 5 + k] * ws[k * 3 + j];
                Assert.Equal(Math.Exp(2 * s - 1), got[i * 3 + j], 1e-12);
            }
    }
}
