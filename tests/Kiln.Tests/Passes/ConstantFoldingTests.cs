// Constant folding: subgraphs of fills fold into one fill (fewer kernels, same values, plans still reused
// with new data); random graphs mixing fills and data give the same values folded, unfolded and as built.
// Also dead code: what the requested outputs do not reach, or what a rewrite replaced, runs no kernel.
using CsCheck;
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

using Ops = Kiln.Ops;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class ConstantFoldingTests
{
    /// <summary>Kernels of the graph optimized with the given steps (no elementwise fusion, so each op counts).</summary>
    private static long Kernels(Tensor y, bool fold) =>
        KernelCount.Of(() => Evaluator.Evaluate(GraphOptimizer.Optimize([y.Node], n => n != ElementwiseFusion.Name && (fold || n != "constfold")).Outputs, optimize: false));

    public static TheoryData<string> Cases => new() { "product", "exp_of_zero", "cast", "reshape_expand", "reduction", "where_compare" };

    private static Tensor Build(string c, Tensor x) => c switch
    {
        "product" => x * (Tensor.Full([], 2) * Tensor.Full([], 3)),
        "exp_of_zero" => x * Tensor.Full([], 0).Exp() + Tensor.Full([1], 0.25).Square(),
        "cast" => x + Tensor.Full([4], 3, DType.Int32).Cast(DType.Float32),
        "reshape_expand" => x - Tensor.Full([2, 2], 1.5).Reshape(4).Expand(3, 4),
        "reduction" => x * (Tensor.Full([5, 4], 0.5).Sum([0]) / Tensor.Full([7], 2).Max()),
        "where_compare" => x + Ops.Where(Tensor.Full([], 1) > Tensor.Full([], 2), Tensor.Full([4], 9), Tensor.Full([4], -9)),
        _ => throw new ArgumentException(c),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FillSubgraphsFoldToOneFill(string c)
    {
        var x = Tensor.RandomNormal([3, 4], seed: 31);
        Assert.True(Kernels(Build(c, x), fold: true) < Kernels(Build(c, x), fold: false), c);
        Assert.Equal(1, Kernels(Build(c, x), fold: true));
        var twin = Build(c, x);
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll(twin.ToArray<float>(), Build(c, x).ToArray<float>(), 1e-6, c);
    }

    [Fact]
    public void FoldedIdentitiesAndFoldedOutputsCostNoKernel()
    {
        var x = Tensor.RandomNormal([3, 4], seed: 32);
        var y = x * Tensor.Full([], 0).Exp();                 // x · exp(0) = x · 1 = x
        var z = Tensor.Full([2, 3], 2).Reshape(6) * Tensor.Full([], 4);
        Assert.Equal(0, KernelCount.Of(() => Tensor.Eval(y, z)));
        Assert.Equal(x.ToArray<float>(), y.ToArray<float>());
        Assert.Equal(Enumerable.Repeat(8f, 6), z.ToArray<float>());
    }

    [Fact]
    public void FoldedPlansAreReusedWithNewData()
    {
        long missesBefore = PlanCache.Misses;
        for (int seed = 0; seed < 3; seed++)
        {
            var x = Tensor.RandomNormal([5], seed: 40 + seed);
            var y = x * (Tensor.Full([], 2) * Tensor.Full([], 3)) + Tensor.Full([5], 1).Exp();
            var expected = x.ToArray<float>().Select(v => v * 6 + MathF.E).ToArray();
            Close.AssertAll(expected, y.ToArray<float>(), 1e-6, $"seed {seed}");
        }
        Assert.True(PlanCache.Misses - missesBefore <= 2, "the folded plan is found again for new data");
    }

    [Fact]
    public void UnusedBranchesAndReplacedNodesRunNoKernel()
    {
        var x = Tensor.RandomNormal([8, 8], seed: 33);
        var w = Tensor.RandomNormal([8, 8], seed: 34);
        var a = x.Tanh();
        var unused = a.MatMul(w).Exp().Sum();   // built, never requested
        var y = a + 1;
        Assert.Equal(1, KernelCount.Of(() => y.Eval()));
        Assert.False(unused.Node.IsRealised);
        // Softmax written as five primitives: the rewrite leaves them dead, so only the fused kernel runs.
        var e = (x - x.Max([-1], keepDim: true)).Exp();
        Assert.Equal(1, KernelCount.Of(() => (e / e.Sum([-1], keepDim: true)).Eval()));
    }

    // ---------- random graphs mixing fills and data: folded == unfolded == as built ----------

    private static readonly Gen<int[]> GenProgram = Gen.Int[0, 11].Array[3, 20];

    private static Tensor[] BuildRandom(int[] program)
    {
        var pool = new List<Tensor>
        {
            Tensor.Full([3, 4], 0.5), Tensor.Full([], 2), Tensor.RandomNormal([3, 4], 10), Tensor.Full([4], -1.5), Tensor.RandomNormal([4], 12),
        };
        int pick = 0;
        Tensor P() => pool[(pick++ * 5 + 1) % pool.Count];
        foreach (int op in program)
        {
            var a = P();
            var next = op switch
            {
                0 => a + P(), 1 => a * P(), 2 => a - P(), 3 => a.Tanh().Exp(), 4 => -a, 5 => a * 1 + 0,
                6 => a.Rank == 2 ? a.T.T : a.Rank == 1 ? a.Reshape(2, 2).Reshape(4) : a.Expand(4),
                7 => a.Sigmoid(), 8 => a.Rank > 0 ? a.Sum([-1], keepDim: true) + a : a + 1,
                9 => a.Cast(DType.Float64).Cast(DType.Float32), 10 => Ops.Where(a > P(), a, P()), _ => a.Rank > 0 ? a.Max([0]) * a : a.Exp(),
            };
            pool.Add(next);
        }
        return [pool[^1], pool[^2], pool[pool.Count / 2]];
    }

    [Fact]
    public void FoldedGraphsGiveTheSameValues()
    {
        GenProgram.Sample(program =>
        {
            var asBuilt = BuildRandom(program).Select(t => t.Node).ToArray();
            Evaluator.Evaluate(asBuilt, optimize: false);
            var planned = BuildRandom(program);
            Tensor.Eval(planned);   // every pass, through the plan (folded fills bound as plan constants)
            var noFold = GraphOptimizer.Optimize(BuildRandom(program).Select(t => t.Node).ToArray(), n => n != "constfold").Outputs;
            Evaluator.Evaluate(noFold, optimize: false);
            // 2e-5: fused reductions (fused_reduce sums blocks in double) and residual GEMMs (the add inside the
            // GEMM's store) round differently from the kernels run as built; folding itself is exact.
            for (int o = 0; o < asBuilt.Length; o++)
            {
                var expected = DataReader.Read<float>(asBuilt[o].Value!);
                Close.AssertAll(expected, planned[o].ToArray<float>(), 2e-5, "folded");
                Close.AssertAll(expected, DataReader.Read<float>(noFold[o].Value!), 2e-5, "constfold off");
            }
        }, iter: 60, threads: 1);
    }
}
