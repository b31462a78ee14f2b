// The optimizer: CSE and simplification remove kernels, never change values (optimized vs as-built on random
// graphs, with every pass switched off in turn), reach a fixpoint, and publish into the requested nodes.
using CsCheck;
using Kiln.Graph;
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class GraphOptimizerTests
{
    /// <summary>Kernels of the graph optimized by CSE and simplification only (fusion has its own tests).</summary>
    private static long KernelsWithoutFusion(Tensor y)
    {
        var opt = GraphOptimizer.Optimize([y.Node], name => name != ElementwiseFusion.Name).Outputs;
        return Kernels(() => Evaluator.Evaluate(opt, optimize: false));
    }

    private static long Kernels(Action eval) => KernelCount.Of(eval);

    [Fact]
    public void CommonSubexpressionsRunOnce()
    {
        var x = Tensor.RandomNormal([4, 8], seed: 1);
        var y = x.Exp() * x.Exp() + x.Exp().Sum([1], keepDim: true);   // three identical exps
        var r = GraphOptimizer.Optimize([y.Node]);
        Assert.Equal(2, r.Rewrites.GetValueOrDefault("cse"));
        Assert.Equal(4, KernelsWithoutFusion(y));                         // exp, mul, sum, add
        var plain = x.Exp() * x.Exp() + x.Exp().Sum([1], keepDim: true);
        Assert.Equal(6, Kernels(() => Evaluator.Evaluate([plain.Node], optimize: false)));
        Assert.Equal(plain.ToArray<float>(), y.ToArray<float>());
    }

    [Fact]
    public void IdentitiesCostNoKernel()
    {
        var x = Tensor.RandomNormal([3, 5], seed: 2).Eval();
        var y = ((x * 1 + 0) - 0) / 1;
        Assert.Equal(0, Kernels(() => y.Eval()));
        Assert.Equal(x.ToArray<float>(), y.ToArray<float>());
        var t = x.T.T.Reshape(15).Reshape(5, 3).Reshape(3, 5);
        Assert.Equal(0, Kernels(() => t.Eval()));
        Assert.Equal(x.ToArray<float>(), t.ToArray<float>());
        var c = x.Cast(DType.Float64).Cast(DType.Float32).Neg().Neg();
        Assert.Equal(0, Kernels(() => c.Eval()));
        Assert.Equal(x.ToArray<float>(), c.ToArray<float>());
    }

    [Fact]
    public void LossyCastChainsAndNonIdentityConstantsStay()
    {
        var x = Tensor.FromArray(new[] { 1.5f, -2.25f, 1e-30f });
        var lossy = x.Cast(DType.BFloat16).Cast(DType.Float32);   // rounds: must not be removed
        Assert.Equal(2, KernelsWithoutFusion(lossy));
        var y = x * 2 + 1;
        Assert.Equal(2, KernelsWithoutFusion(y));
        Assert.Equal(new[] { 4f, -3.5f, 1f }, y.ToArray<float>());
    }

    [Fact]
    public void LongChainsReachAFixpoint()
    {
        var x = Tensor.RandomNormal([2, 3, 4], seed: 3).Eval();
        var y = x;
        for (int i = 0; i < 50; i++) y = y.Permute(1, 2, 0);   // 50 rotations = 2 rotations (mod 3)
        var r = GraphOptimizer.Optimize([y.Node]);
        Assert.Equal(1, r.NodesAfter);
        Assert.True(r.Sweeps <= 3, $"{r.Sweeps} sweeps");
        Assert.Equal(x.Permute(2, 0, 1).ToArray<float>(), y.ToArray<float>());
    }

    [Fact]
    public void OutputsMergedByCseStayIndependent()
    {
        var x = Tensor.RandomNormal([64], seed: 4);
        var a = x.Exp(); var b = x.Exp();
        Assert.Equal(1, Kernels(() => Tensor.Eval(a, b)));
        var expected = b.ToArray<float>();
        a.Dispose();                                       // must not free b's value
        for (int i = 0; i < 3; i++) (x * (i + 2)).Eval();  // recycle pooled buffers
        Assert.Equal(expected, b.ToArray<float>());
    }

    // ---------- random graphs: optimized == as built, with each step switched off in turn ----------

    private static readonly Gen<int[]> GenProgram = Gen.Int[0, 13].Array[4, 24];
    private static readonly Tensor W44 = Tensor.RandomNormal([4, 4], 13, std: 0.5);

    private static Tensor[] Build(int[] program)
    {
        var pool = new List<Tensor> { Tensor.RandomNormal([3, 4], 10), Tensor.RandomNormal([3, 4], 11), Tensor.RandomNormal([4], 12) };
        int pick = 0;
        Tensor P() => pool[(pick++ * 7 + 3) % pool.Count];
        foreach (int op in program)
        {
            var a = P();
            var next = op switch
            {
                0 => a + P(), 1 => a * P(), 2 => a - P(), 3 => a.Tanh().Exp(), 4 => -(-a), 5 => a * 1 + 0,
                6 => a.Rank == 2 ? a.T.T : a.Reshape(2, 2).Reshape(4), 7 => a.Tanh(), 8 => a.Sum([-1], keepDim: true) + a,
                9 => a.Cast(DType.Float64).Cast(DType.Float32), 10 => a.Tanh() + a.Tanh(), 11 => a.Sigmoid() * a,
                12 => a.Rank == 2 ? (a.MatMul(W44) * 0.5).Tanh() : a * 2,                 // a product with an elementwise tail (matmulprogram)
                _ => a.Rank == 2 ? (a * a).Exp().Sum([0], keepDim: true) + a : a + 1,     // a leading-axis reduction prologue
            };
            pool.Add(next);
        }
        return [pool[^1], pool[^2], pool[pool.Count / 2]];
    }

    private static float[][] Run(int[] program, Func<string, bool>? enabled)
    {
        var nodes = Build(program).Select(t => t.Node).ToArray();
        // As built (no optimizer), or optimized with the given steps and then run exactly as optimized.
        var run = enabled is null ? nodes : GraphOptimizer.Optimize(nodes, enabled).Outputs;
        Evaluator.Evaluate(run, optimize: false);
        return run.Select(n => Kiln.Runtime.DataReader.Read<float>(n.Value!)).ToArray();
    }

    [Fact]
    public void OptimizedGraphsGiveTheSameValues()
    {
        var steps = GraphOptimizer.StepNames.ToArray();
        // Exact equality with the graph as built holds for the fused-group interpreter (the unfused kernels' span
        // calls per block); the compiled loop is within an ulp or two of it (Cpu/FusedCodegenTests), so pin the interpreter.
        Kiln.Cpu.FusedKernel.CodegenOverride.Value = false;
        try
        {
            GenProgram.Sample(program =>
            {
                var reference = Run(program, enabled: null);
                var configs = new List<Func<string, bool>> { _ => true };
                configs.AddRange(steps.Select(s => (Func<string, bool>)(n => n != s)));
                foreach (var enabled in configs)
                {
                    var got = Run(program, enabled);
                    for (int o = 0; o < reference.Length; o++)
                        Assert.Equal(reference[o], got[o]);   // == on floats: exact, with −0 equal to +0
                }
            }, iter: 60, threads: 1);
        }
        finally { Kiln.Cpu.FusedKernel.CodegenOverride.Value = null; }
    }

    [Fact]
    public void CompiledFusedLoopsGiveCloseValues()
    {
        GenProgram.Sample(program =>
        {
            var reference = Run(program, enabled: null);
            Kiln.Cpu.FusedKernel.CodegenOverride.Value = true;
            try
            {
                var got = Run(program, _ => true);
                for (int o = 0; o < reference.Length; o++) Close.AssertAll(reference[o], got[o], 1e-5, $"output {o}");
            }
            finally { Kiln.Cpu.FusedKernel.CodegenOverride.Value = null; }
        }, iter: 60, threads: 1);
    }

    [Fact]
    public void StructuralHashSeesFillValues()
    {
        var x = Tensor.RandomNormal([3], 1);
        Assert.NotEqual((x * 1).StructuralHash(), (x * 2).StructuralHash());
        Assert.Equal((x * 2).StructuralHash(), (Tensor.RandomNormal([3], 9) * 2).StructuralHash());
    }
}
