// The CPU memory plan: intermediates placed by liveness in one arena per dtype. Checked against its own promise
// (values alive at the same time never share memory, found by brute force over every pair), against the pool
// (the same values with the arena off, bit for bit), and on the paths that keep it safe when a kernel hands back
// its input's memory (copy-out on publish, fallback to the pool while overlapping memory is still referenced).
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Tests.Runtime;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class MemoryPlanTests
{
    private static Plan PlanOf(Tensor[] outputs, bool optimize)
    {
        var walk = PlanKey.Build(outputs.Select(t => t.Node).ToArray(), optimize);
        return PlanCache.Get(walk, optimize, out _);
    }

    private static float[] Run(Func<Tensor> build, bool optimize, bool arena)
    {
        bool was = MemoryPlan.Enabled;
        MemoryPlan.Enabled = arena;
        try
        {
            var y = build();
            Evaluator.Evaluate([y.Node], optimize);
            return y.ToArray<float>();
        }
        finally { MemoryPlan.Enabled = was; }
    }

    /// <summary>A chain of unfused GEMMs and exps: each value dies one level after it is made.</summary>
    private static Tensor Chain(Tensor x, Tensor w, int links)
    {
        var h = x;
        for (int i = 0; i < links; i++) h = (h.MatMul(w) * 0.1).Exp();
        return h.Sum();
    }

    [Fact]
    public void AChainReusesTwoOrThreeSlicesInsteadOfOneBufferPerValue()
    {
        var x = Tensor.RandomNormal([32, 64], seed: 1); var w = Tensor.RandomNormal([64, 64], seed: 2, std: 0.1);
        var plan = PlanOf([Chain(x, w, 12)], optimize: false);
        var mp = plan.Memory;
        long value = 32 * 64;
        Assert.Equal(36 * value, mp.UnplannedElements[(int)DType.Float32]);   // 12 x (matmul, mul, exp)
        Assert.InRange(mp.ArenaElements[(int)DType.Float32], 2 * value, 3 * value);
        long used = MemoryPlan.SlicesUsed;
        var withArena = Run(() => Chain(x, w, 12), optimize: false, arena: true);
        Assert.True(MemoryPlan.SlicesUsed - used >= 36, $"{MemoryPlan.SlicesUsed - used} kernels ran in their slice");
        Assert.Equal(Run(() => Chain(x, w, 12), optimize: false, arena: false), withArena);
    }

    [Fact]
    public void ValuesAliveAtTheSameTimeNeverShareMemory()
    {
        // Branching graphs with views, broadcasts and reductions, optimized and as built.
        var r = new Random(7);
        for (int trial = 0; trial < 40; trial++)
        {
            var x = Tensor.RandomNormal([8, 16], seed: trial); var w = Tensor.RandomNormal([16, 16], seed: 100 + trial);
            var pool = new List<Tensor> { x };
            for (int k = 0; k < 14; k++)
            {
                var a = pool[r.Next(pool.Count)]; var b = pool[r.Next(pool.Count)];
                pool.Add(r.Next(6) switch
                {
                    0 => a.MatMul(w),
                    1 => (a + b).Tanh(),
                    2 => a.T.Reshape(8, 16) * b,
                    3 => a - a.Mean([1], keepDim: true),
                    4 => a.Softmax(-1) * 2,
                    _ => a.Exp() * b.Sin(),
                });
            }
            var outs = new[] { pool[^1], pool[^3].Sum([0]) };
            foreach (bool optimize in new[] { false, true })
            {
                var plan = PlanOf(outs, optimize);
                var mp = plan.Memory;
                for (int i = 0; i < plan.Nodes.Length; i++)
                    for (int j = i + 1; j < plan.Nodes.Length; j++)
                    {
                        var (di, si, li) = mp.Slots[i]; var (dj, sj, lj) = mp.Slots[j];
                        if (li == 0 || lj == 0 || di != dj) continue;
                        var (fi, ei) = mp.Lifetimes[i]; var (fj, ej) = mp.Lifetimes[j];
                        bool together = fi <= ej && fj <= ei;
                        bool overlap = si < sj + lj && sj < si + li;
                        Assert.False(together && overlap, $"trial {trial}: nodes {i} {plan.Nodes[i].Op.Name} and {j} {plan.Nodes[j].Op.Name} are alive together and share memory");
                    }
                // Published values are never planned.
                for (int i = 0; i < plan.Nodes.Length; i++)
                    if (plan.OwnersOf[i].Length > 0) Assert.Equal(0, mp.Slots[i].Length);
            }
            Tensor Build() => x.MatMul(w).Tanh().Sum();   // keep x and w used in a value check too
            Assert.Equal(Run(Build, true, false), Run(Build, true, true));
        }
    }

    /// <summary>An opaque op whose kernel hands back its input's memory, which the memory plan does not model
    /// (no op of Kiln's own does that today; the plan's safety must not depend on it).</summary>
    private static readonly OpDef SameMemory = new("same_memory_for_test", 1, FusionClass.Opaque,
        (i, _) => (i[0].Shape, i[0].DType),
        (x, _) => new Realised(x[0].Buffer, x[0].Offset, x[0].Shape, x[0].Strides), null, widensHalf: false);

    [Fact]
    public void AKernelThatHandsBackItsInputsMemoryIsCopiedOutWhenPublishedAndBlocksReuseWhileReferenced()
    {
        // e = exp(x) is planned to die when c = alias(e) has run, but c (e's memory) is read two levels later;
        // the other branch's values are planned into e's memory meanwhile and must fall back to the pool.
        var x = Tensor.RandomNormal([16, 16], seed: 3); var z = Tensor.RandomNormal([16, 16], seed: 4);
        Tensor Build(Tensor xs, Tensor zs)
        {
            var c = Tensor.Apply(SameMemory, null, xs.Exp());
            var late = zs.Sin().Cos().Tanh().Exp();
            return (c * 2 + late) * c;
        }
        long fallbacks = MemoryPlan.Fallbacks, copied = MemoryPlan.CopiedOut;
        var got = Run(() => Build(x, z), optimize: false, arena: true);
        Assert.True(MemoryPlan.Fallbacks > fallbacks, "no node fell back to the pool although the memory it was planned into was still referenced");
        var xv = x.ToArray<float>(); var zv = z.ToArray<float>();
        var expected = xv.Select((v, i) => (MathF.Exp(v) * 2 + MathF.Exp(MathF.Tanh(MathF.Cos(MathF.Sin(zv[i]))))) * MathF.Exp(v)).ToArray();
        Assert.Equal(Run(() => Build(x, z), optimize: false, arena: false), got);
        for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(got[i] - expected[i]) <= 1e-5 * (1 + Math.Abs(expected[i])), $"[{i}] {got[i]} vs {expected[i]}");

        // Published: the alias of an arena value is the output itself, so it is copied out of the arena.
        var y = Tensor.Apply(SameMemory, null, x.Exp());
        Evaluator.Evaluate([y.Node], optimize: false);
        Assert.True(MemoryPlan.CopiedOut > copied, "the published alias of an arena value was not copied out");
        var keep = y.ToArray<float>();
        for (int k = 0; k < 3; k++) Run(() => Chain(x, z, 4), optimize: false, arena: true);   // reuse the pool's arrays
        Assert.Equal(keep, y.ToArray<float>());
        for (int i = 0; i < keep.Length; i++) Assert.True(Math.Abs(keep[i] - MathF.Exp(xv[i])) <= 1e-6 * MathF.Exp(xv[i]), $"exp [{i}]");
    }
}
