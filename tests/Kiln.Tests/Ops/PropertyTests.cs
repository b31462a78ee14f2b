// Properties over random inputs (CsCheck): broadcasting against NumPy's rule, view round-trips, reductions, and
// the evaluation cache (evaluating again runs no kernel; shared work in one Eval runs once).
using CsCheck;
using Kiln.Runtime;

namespace Kiln.Tests.Ops;

public class PropertyTests
{
    private const long Iter = 100;

    /// <summary>NumPy's broadcasting rule, spelled the way its docs do: walk both shapes from the trailing axis.</summary>
    private static int[]? NumPyBroadcast(int[] a, int[] b)
    {
        var r = new List<int>();
        for (int i = 1; i <= Math.Max(a.Length, b.Length); i++)
        {
            int da = i <= a.Length ? a[^i] : 1, db = i <= b.Length ? b[^i] : 1;
            if (da == db) r.Add(da);
            else if (da == 1) r.Add(db);
            else if (db == 1) r.Add(da);
            else return null;
        }
        r.Reverse();
        return [.. r];
    }

    /// <summary>Shapes of rank 0-4 with sizes weighted towards 1 (so broadcasting happens) and occasional 0.</summary>
    private static readonly Gen<int[]> GenShape =
        Gen.Int[0, 4].SelectMany(rank => Gen.Int[0, 9].Select(k => k switch { 0 => 0, <= 4 => 1, <= 6 => 2, _ => 3 }).Array[rank]);

    [Fact]
    public void BroadcastShapeRuleIsNumPys()
    {
        Gen.Select(GenShape, GenShape).Sample((sa, sb) =>
        {
            var expected = NumPyBroadcast(sa, sb);
            var a = Tensor.Zeros(sa, DType.Float64);
            var b = Tensor.Zeros(sb, DType.Float64);
            if (expected is null)
            {
                var ex = Assert.Throws<ArgumentException>(() => a + b);
                Assert.Contains("add", ex.Message);
                Assert.Contains(Nd.Fmt(sa), ex.Message);
                Assert.Contains(Nd.Fmt(sb), ex.Message);
            }
            else
            {
                var y = a + b;
                Assert.Equal(expected, y.Shape);
                Assert.Equal(expected, (b * a).Shape);
            }
        }, iter: Iter);
    }

    /// <summary>An output shape and two operand shapes that broadcast to it (leading axes dropped, some axes set to 1).</summary>
    private static readonly Gen<(int[] Out, int[] A, int[] B)> GenCompatible =
        Gen.Int[0, 4].SelectMany(rank => Gen.Int[1, 5].Array[rank]).SelectMany(outShape =>
        {
            Gen<int[]> Operand() => Gen.Int[0, outShape.Length].SelectMany(drop =>
                Gen.Bool.Array[outShape.Length - drop].Select(ones => outShape[drop..].Select((d, i) => ones[i] ? 1 : d).ToArray()));
            return Gen.Select(Operand(), Operand(), (a, b) => (outShape, a, b));
        });

    [Fact]
    public void AddOverRandomBroadcastShapesMatchesNaiveLoop()
    {
        Gen.Select(GenCompatible, Gen.Int, Gen.Bool).Sample((shapes, seed, transposeA) =>
        {
            var (_, sa, sb) = shapes;
            var a = Nd.Random(sa, seed);
            var b = Nd.Random(sb, seed + 1);
            var ta = a.ToTensor(DType.Float64);
            if (transposeA && sa.Length >= 2)
            {
                // Same logical values through a non-contiguous view: store the transpose, then view it back.
                ta = a.T().ToTensor(DType.Float64).T;
            }
            var y = ta + b.ToTensor(DType.Float64);
            var expected = Nd.Zip(a, b, (p, q) => p + q);
            Assert.Equal(NumPyBroadcast(sa, sb), y.Shape);
            Assert.Equal(expected.Data, y.ToArray<double>());   // one IEEE add per element: bit-exact
        }, iter: Iter);
    }

    private static readonly Gen<int[]> GenPermutation = Gen.Int[1, 4].SelectMany(rank =>
        Gen.Double.Array[rank].Select(keys => Enumerable.Range(0, rank).OrderBy(i => keys[i]).ToArray()));

    [Fact]
    public void ReshapeAndPermuteRoundTripsPreserveValues()
    {
        Gen.Select(GenPermutation.SelectMany(p => Gen.Int[1, 4].Array[p.Length].Select(s => (p, s))), Gen.Int).Sample((ps, seed) =>
        {
            var (perm, shape) = ps;
            var x = Nd.Random(shape, seed);
            var t = x.ToTensor(DType.Float64);
            var inv = new int[perm.Length];
            for (int i = 0; i < perm.Length; i++) inv[perm[i]] = i;

            var p = t.Permute(perm);
            Assert.Equal(perm.Select(k => shape[k]), p.Shape);
            Assert.Equal(x.Permute(perm).Data, p.ToArray<double>());
            Assert.Equal(x.Data, p.Permute(inv).ToArray<double>());
            // Reshape of a permuted view (a copy when the strides cannot express it) keeps the permuted order.
            Assert.Equal(x.Permute(perm).Data, p.Reshape(-1).ToArray<double>());
            Assert.Equal(x.Data, p.Reshape(-1).Reshape([.. p.Shape]).Permute(inv).Reshape(shape).ToArray<double>());
            // Reshape to a different factorization and back.
            int n = x.Numel;
            int f = Enumerable.Range(1, n).Last(d => n % d == 0 && d <= 3);
            Assert.Equal(x.Data, t.Reshape(f, -1).Reshape(shape).ToArray<double>());
            Assert.Equal(x.Data, t.Reshape(-1).ToArray<double>());
        }, iter: Iter);
    }

    [Fact]
    public void SumOverRandomAxesMatchesNaive()
    {
        var gen = Gen.Int[1, 4].SelectMany(rank => Gen.Select(Gen.Int[0, 5].Array[rank], Gen.Bool.Array[rank], Gen.Bool, Gen.Int));
        gen.Sample((shape, pick, keep, seed) =>
        {
            var axes = Enumerable.Range(0, shape.Length).Where(i => pick[i]).ToArray();
            var x = Nd.Random(shape, seed);
            // Mix positive and negative spellings of the same axes.
            var spelled = axes.Select((a, i) => i % 2 == 0 ? a : a - shape.Length).ToArray();
            var y = x.ToTensor(DType.Float64).Sum(spelled, keep);
            Nd.AssertClose(x.Reduce(axes, keep, Nd.Sum), y, 1e-12, $"sum over [{string.Join(",", spelled)}] of {Nd.Fmt(shape)} keepDim={keep}");
            var yi = x.Map(v => Math.Round(v * 1000)).ToTensor(DType.Int64).Sum(spelled, keep);
            Nd.AssertClose(x.Map(v => Math.Round(v * 1000)).Reduce(axes, keep, Nd.Sum), yi, 0, "int64 sum");
        }, iter: Iter);
    }
}

/// <summary>Tests that read the process-wide kernel counter: they run alone, after the parallel tests.</summary>
[CollectionDefinition(nameof(KernelCountingCollection), DisableParallelization = true)]
public class KernelCountingCollection;

[Collection(nameof(KernelCountingCollection))]
public class EvalCachePropertyTests
{
    private const long Iter = 100;

    /// <summary>
    /// A random small graph over three leaves of shapes (3,4), (4,) and (3,1); every op keeps its result in
    /// {(3,4), (4,), (3,1), (1,)} so any two nodes broadcast together: each step applies a random op to random earlier nodes. The recipe
    /// (a list of integers) is what CsCheck generates and shrinks; Build turns it into fresh nodes every call.
    /// </summary>
    private static readonly Gen<int[]> GenRecipe = Gen.Int[1, 12].SelectMany(steps => Gen.Int[0, 1 << 20].Array[steps]);

    private static Tensor Build(int[] recipe, out List<Tensor> all)
    {
        all =
        [
            Nd.Random([3, 4], 1).ToTensor(DType.Float32),
            Nd.Random([4], 2).ToTensor(DType.Float32),
            Nd.Random([3, 1], 3, 0.5, 2).ToTensor(DType.Float32),
        ];
        foreach (int code in recipe)
        {
            Tensor a = all[(code >> 4) % all.Count], b = all[(code >> 10) % all.Count];
            var y = (code & 15) switch
            {
                0 => a + b,
                1 => a * b,
                2 => a - b.Tanh(),
                3 => Kiln.Ops.Maximum(a, b),
                4 => a.Sigmoid(),
                5 => a.Exp().Log1pLike(),
                6 => (a + b).Softmax(-1),
                7 => a.Sum([-1], keepDim: true) + b,
                8 => Kiln.Ops.Where(a > b, a, b * 0.5),
                9 => (a * b).Mean([-1], keepDim: true),
                10 => a.Rank == 2 && a.Dim(0) == 3 && a.Dim(1) == 4 ? a.T.MatMul(a).Sum([0]) * 0.01 + b : a.Square(),
                11 => a.Reshape(-1).Slice(0, 0, int.MaxValue, 2).Sum() + a,
                12 => Kiln.Ops.RmsNorm(a + b, Tensor.Ones([(a + b).Dim(-1)])),
                13 => a.Gelu() - b.Silu(),
                14 => Interleave(a + b, b),
                _ => a.Abs().Sqrt(),
            };
            all.Add(y);
        }
        return all[^1];
    }

    /// <summary>Same shape as s: every other element of concat([s, b broadcast to s], -1).</summary>
    private static Tensor Interleave(Tensor s, Tensor b) =>
        Kiln.Ops.Concat([s, b.Expand([.. s.Shape]) * 2], -1).Slice(-1, 0, int.MaxValue, 2);

    /// <summary>Unrealised nodes reachable from the outputs: exactly the kernels an Eval of them must run.</summary>
    private static int PendingNodes(params Tensor[] outputs)
    {
        var seen = new HashSet<Kiln.Graph.Node>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<Kiln.Graph.Node>(outputs.Select(t => t.Node));
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            if (n.IsRealised || !seen.Add(n)) continue;
            foreach (var i in n.Inputs) stack.Push(i);
        }
        return seen.Count;
    }

    /// <summary>Kernels an Eval of these outputs runs: the nodes left after the optimizer (CSE, simplification).</summary>
    private static int KernelsAfterOptimizing(params Tensor[] outputs) =>
        Kiln.Passes.GraphOptimizer.Optimize(outputs.Select(t => t.Node).ToArray()).NodesAfter;

    private static bool BitEqual(float[] a, float[] b) =>
        a.Length == b.Length && a.Select(BitConverter.SingleToInt32Bits).SequenceEqual(b.Select(BitConverter.SingleToInt32Bits));

    [Fact]
    public void EvalTwiceRunsKernelsOnceAndGivesIdenticalValues()
    {
        GenRecipe.Sample(recipe =>
        {
            var y = Build(recipe, out _);
            int pending = KernelsAfterOptimizing(y);
            long k0 = Evaluator.KernelRuns;
            y.Eval();
            long k1 = Evaluator.KernelRuns;
            Assert.Equal(pending, k1 - k0);
            var v1 = y.ToArray<float>();
            y.Eval();
            var v2 = y.ToArray<float>();
            Tensor.Eval(y, y);
            Assert.Equal(k1, Evaluator.KernelRuns);
            Assert.True(BitEqual(v1, v2), "values changed between reads");
            // An identically built fresh graph computes bit-identical values.
            Assert.True(BitEqual(v1, Build(recipe, out _).ToArray<float>()), "a rebuilt graph gave different values");
        }, iter: Iter, threads: 1);
    }

    [Fact]
    public void SharedSubgraphInOneEvalRunsOnce()
    {
        // Bitwise equality across different fusion boundaries (s shared by three outputs here, fused into a
        // separately) holds for the span interpreter, which runs the unfused kernels' TensorPrimitives calls; the
        // compiled loop agrees with it to the last ulp or two (Cpu/FusedCodegenTests), so this test pins the interpreter.
        Kiln.Cpu.FusedKernel.CodegenOverride.Value = false;
        try
        {
            GenRecipe.Sample(recipe =>
            {
                var s = Build(recipe, out var all);
                var a = s.Exp() + all[0];
                var b = (s * all[1]).Sum();
                var c = s.Tanh();
                int pending = KernelsAfterOptimizing(a, b, c);
                int separately = PendingNodes(a) + PendingNodes(b) + PendingNodes(c);
                long k0 = Evaluator.KernelRuns;
                Tensor.Eval(a, b, c);
                Assert.Equal(pending, Evaluator.KernelRuns - k0);
                Assert.True(PendingNodes(a, b, c) < separately || PendingNodes(s) == 0, "the outputs share work");
                // Outputs are cached; reading them runs nothing.
                var va = a.ToArray<float>(); var vb = b.ToArray<float>(); _ = c.ToArray<float>();
                Assert.Equal(pending, Evaluator.KernelRuns - k0);
                // Same values as evaluating each on its own from a fresh build.
                var s2 = Build(recipe, out var all2);
                Assert.True(BitEqual(va, (s2.Exp() + all2[0]).ToArray<float>()), "a differs from a separate evaluation");
                // b alone folds into one fused_reduce (block sums in double), whose summation order differs from
                // the reduction kernel's: equal to rounding, not bitwise.
                var vb2 = (s2 * all2[1]).Sum().ToArray<float>();
                Assert.True(Math.Abs(vb[0] - vb2[0]) <= 1e-5 * (1 + Math.Abs(vb[0])) || (float.IsNaN(vb[0]) && float.IsNaN(vb2[0])) || vb[0] == vb2[0], $"b differs from a separate evaluation: {vb[0]} vs {vb2[0]}");
            }, iter: Iter, threads: 1);
        }
        finally { Kiln.Cpu.FusedKernel.CodegenOverride.Value = null; }
    }

    [Fact]
    public void CachedValuesSurviveBufferRecycling()
    {
        // Outputs (and views of them consumed by later graphs) must never go back to the buffer pool: evaluate
        // a random graph, then many others that rent buffers of the same sizes, and re-read the first outputs.
        Gen.Select(GenRecipe, GenRecipe.Array[8]).Sample((first, others) =>
        {
            var y = Build(first, out var all);
            var mid = all[all.Count / 2];
            Tensor.Eval(y, mid);
            var vy = y.ToArray<float>(); var vm = mid.ToArray<float>();
            foreach (var r in others)
            {
                var z = Build(r, out _);
                // Consume the cached outputs through views and ops, so their buffers flow through other plans.
                Tensor.Eval(z, (z + y.Reshape(-1).Sum()) * mid.Reshape(-1).Slice(0, 0, 1).Reshape([]), y.Reshape(-1).Slice(0, 0, int.MaxValue, 2).Exp());
            }
            Assert.True(BitEqual(vy, y.ToArray<float>()), "a cached output changed after later evaluations");
            Assert.True(BitEqual(vm, mid.ToArray<float>()), "a cached intermediate output changed after later evaluations");
        }, iter: 50, threads: 1);
    }

    [Fact]
    public void EvaluatingAnIntermediateLaterReusesNothingButIsCorrect()
    {
        // Only requested outputs are cached: an intermediate of an earlier Eval is recomputed (and equal).
        var x = Nd.Random([5, 6], 9).ToTensor(DType.Float64);
        var mid = x.Exp();
        var y = mid.Sum();
        y.Eval();
        Assert.False(mid.IsRealised);
        long k0 = Evaluator.KernelRuns;
        Close.AssertAll(Nd.Random([5, 6], 9).Data.Select(Math.Exp).ToArray(), mid.ToArray<double>(), 1e-15, "intermediate evaluated later");
        Assert.Equal(1, Evaluator.KernelRuns - k0);
    }
}

internal static class PropertyTestExtensions
{
    /// <summary>log(1 + x) spelled with Kiln ops (keeps the random graphs finite: x = exp(...) > 0).</summary>
    public static Tensor Log1pLike(this Tensor x) => (x + 1).Log();
}
