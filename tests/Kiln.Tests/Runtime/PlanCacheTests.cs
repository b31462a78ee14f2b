// The plan cache: a graph with the structure of an earlier one reuses its plan (no optimization or
// scheduling) with the new data; another shape, op or constant is a new plan; plans hold no user data.
using Kiln.Runtime;

namespace Kiln.Tests.Runtime;

using Ops = Kiln.Ops;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class PlanCacheTests
{
    private static Tensor Layer(Tensor x, Tensor w, Tensor g) => Ops.RmsNorm(x.MatMul(w).Silu() * 1 + x, g) * 2;

    [Fact]
    public void SameStructureNewDataHitsAndComputesTheNewValues()
    {
        var w = Tensor.RandomNormal([8, 8], seed: 1); var g = Tensor.RandomNormal([8], seed: 2);
        Layer(Tensor.RandomNormal([4, 8], seed: 3), w, g).Eval();   // make sure the plan exists
        for (int trial = 0; trial < 3; trial++)
        {
            var x = Tensor.RandomNormal([4, 8], seed: 10 + trial);
            long hits = PlanCache.Hits, misses = PlanCache.Misses;
            var y = Layer(x, w, g).ToArray<float>();
            Assert.Equal(hits + 1, PlanCache.Hits);
            Assert.Equal(misses, PlanCache.Misses);
            // Reference: the same layer evaluated as built, op by op, without optimizer or plan reuse.
            var reference = Layer(x, w, g);
            Evaluator.Evaluate([reference.Node], optimize: false);
            Assert.Equal(reference.ToArray<float>(), y);
        }
    }

    [Fact]
    public void OtherShapeOpOrConstantIsANewPlan()
    {
        var w = Tensor.RandomNormal([8, 8], seed: 1); var g = Tensor.RandomNormal([8], seed: 2);
        Layer(Tensor.RandomNormal([4, 8], seed: 3), w, g).Eval();
        long misses = PlanCache.Misses;
        Layer(Tensor.RandomNormal([5, 8], seed: 3), w, g).Eval();                       // shape
        Assert.Equal(misses + 1, PlanCache.Misses);
        var x = Tensor.RandomNormal([4, 8], seed: 4);
        (Ops.RmsNorm(x.MatMul(w).Gelu() * 1 + x, g) * 2).Eval();                        // op
        Assert.Equal(misses + 2, PlanCache.Misses);
        (Ops.RmsNorm(x.MatMul(w).Silu() * 1 + x, g) * 3).Eval();                        // constant
        Assert.Equal(misses + 3, PlanCache.Misses);
        (Ops.RmsNorm(x.MatMul(w).Silu() * 1 + x, g) * 3).Eval();
        Assert.Equal(misses + 3, PlanCache.Misses);
    }

    [Fact]
    public void OneTensorUsedTwiceIsNotTheSamePlanAsTwoTensors()
    {
        var a = Tensor.RandomNormal([6], seed: 5); var b = Tensor.RandomNormal([6], seed: 6);
        var same = (a * a).ToArray<float>();
        var two = (a * b).ToArray<float>();   // must not reuse the a*a plan with one slot
        var av = a.ToArray<float>(); var bv = b.ToArray<float>();
        Assert.Equal(av.Select((v, i) => v * bv[i]).ToArray(), two);
        Assert.Equal(av.Select(v => v * v).ToArray(), same);
    }

    [Fact]
    public void CachedPlansDoNotKeepUserDataAlive()
    {
        var weak = EvaluateAndForget();
        for (int i = 0; i < 3 && weak.IsAlive; i++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
        Assert.False(weak.IsAlive, "a cached plan still references the data of the graph that built it");
    }

    private static WeakReference EvaluateAndForget()
    {
        var x = Tensor.RandomNormal([3, 7], seed: 7);
        (x.Exp().Sum([1]) * 5 + x.Max([1])).Eval();
        return new WeakReference(x.Node);
    }
}
