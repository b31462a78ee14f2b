// The runtime's promises: levels of independent nodes, the tensor cache, release of intermediates to the
// buffer pool, and the structural hash / Graphviz views of a graph.
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Tests.Runtime;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class EvaluatorTests
{
    [Fact]
    public void IndependentBranchesShareALevel()
    {
        var x = Tensor.RandomNormal([4, 8], seed: 1);
        var w = Tensor.RandomNormal([8, 8], seed: 2);
        // q, k, v projections are independent: one level; their sum depends on all three.
        var w2 = Tensor.RandomNormal([8, 8], seed: 3);
        var q = x.MatMul(w); var k = x.MatMul(w2); var v = x.Exp();
        var y = q + k + v;
        var plan = Schedule.Build([y.Node]);
        Assert.Equal(5, plan.Nodes.Length);   // q, k, v, +, +
        Assert.Equal(3, plan.Levels.Length);
        Assert.Equal(3, plan.Levels[0].Length);
        Assert.All(plan.Levels.Skip(1), l => Assert.Single(l));
    }

    [Fact]
    public void RealisedNodesAreInputsNotWork()
    {
        var x = Tensor.RandomNormal([3], seed: 1);
        var a = (x * 2).Eval();
        var b = a + 1;
        var plan = Schedule.Build([b.Node]);
        Assert.Single(plan.Nodes);
        Assert.Equal(-1, plan.Inputs[0][0]);
    }

    [Fact]
    public void IntermediatesReturnToThePool()
    {
        var x = Tensor.RandomNormal([1000], seed: 3);
        var y = x;
        for (int i = 0; i < 6; i++) y = (y * 1.5).Tanh();
        long before = BufferPool.Returns;
        Evaluator.Evaluate([y.Node], optimize: false);   // as built: fusion would leave no intermediates
        // 12 kernels; 11 intermediates die inside this Eval and go back to the pool (the pool may be full
        // for their size class if other tests filled it, so count at least a few).
        Assert.True(BufferPool.Returns - before >= 1, $"no buffer returned to the pool ({BufferPool.Returns - before})");
        Assert.True(y.IsRealised);
        // The published output is never handed out again: a new Eval reusing pooled buffers leaves it intact.
        var snapshot = y.ToArray<float>();
        var z = x; for (int i = 0; i < 6; i++) z = (z * 0.5).Sin();
        z.Eval();
        Assert.Equal(snapshot, y.ToArray<float>());
    }

    [Fact]
    public void IntermediatesOfOneEvalAreNotCached()
    {
        var x = Tensor.RandomNormal([16], seed: 4);
        var mid = x.Exp();
        var y = mid + 1;
        y.Eval();
        Assert.False(mid.IsRealised);
        long runs = Evaluator.KernelRuns;
        mid.Eval();
        Assert.Equal(runs + 1, Evaluator.KernelRuns);
        Assert.Equal(x.ToArray<float>().Select(MathF.Exp).ToArray(), mid.ToArray<float>(), (a, b) => Math.Abs(a - b) <= 1e-6f * Math.Abs(a));
    }

    [Fact]
    public void StructuralHashIgnoresDataAndIdsButSeesShapesAndOps()
    {
        Tensor Build(int seed, int n) { var x = Tensor.RandomNormal([n, 4], seed); return (x.MatMul(x.T).Softmax(-1) * 2).Sum([1]); }
        long h1 = Build(1, 3).StructuralHash(), h2 = Build(2, 3).StructuralHash();
        Assert.Equal(h1, h2);
        Assert.NotEqual(h1, Build(1, 5).StructuralHash());
        var x3 = Tensor.RandomNormal([3, 4], 1);
        Assert.NotEqual(h1, (x3.MatMul(x3.T).LogSoftmax(-1) * 2).Sum([1]).StructuralHash());
        Assert.NotEqual(h1, (x3.MatMul(x3.T).Softmax(-1) * 2).Sum([0]).StructuralHash());
    }

    [Fact]
    public void StructuralHashOfADeepGraphNeedsNoRecursion()
    {
        Tensor Chain(int seed) { var y = Tensor.RandomNormal([4], seed); for (int i = 0; i < 50000; i++) y = y.Tanh(); return y; }
        Assert.Equal(Chain(1).StructuralHash(), Chain(2).StructuralHash());
    }

    [Fact]
    public void DotShowsEveryNodeAndEdge()
    {
        var x = Tensor.RandomNormal([2, 3], 1);
        var y = (x.Exp() + x).Sum([1]);
        string dot = y.ToDot();
        Assert.StartsWith("digraph kiln {", dot);
        foreach (var op in new[] { "exp", "add", "sum", "constant" }) Assert.Contains(op, dot);
        Assert.Equal(4, dot.Split("->").Length - 1);   // x→exp, exp→add, x→add, add→sum
    }

    [Fact]
    public void DisposeReturnsTheBufferAndDependentsRecompute()
    {
        var x = Tensor.RandomNormal([64], seed: 5);
        var y = (x * 2).Eval();
        var expected = y.ToArray<float>();
        var later = y + 1;            // built on y before it is disposed
        var detached = y.Detach();    // shares y's buffer through a view of its own
        long returns = BufferPool.Returns;
        y.Dispose();
        Assert.True(BufferPool.Returns == returns, "a buffer with a detached view must not go back to the pool");
        Assert.Equal(expected, detached.ToArray<float>());

        var z = (x * 3).Eval();
        var zExpected = z.ToArray<float>();
        var zLater = z - 1;
        returns = BufferPool.Returns;
        z.Dispose();
        Assert.True(BufferPool.Returns > returns, "the disposed value's buffer should be back in the pool");
        Assert.Throws<ObjectDisposedException>(() => z.ToArray<float>());
        // Overwrite pooled buffers, then check the dependent graph recomputes z from x.
        for (int i = 0; i < 4; i++) (x * 7 + i).Eval();
        Assert.Equal(zExpected.Select(v => v - 1).ToArray(), zLater.ToArray<float>());
        Assert.Equal(expected.Select(v => v + 1).ToArray(), later.ToArray<float>());
    }

    [Fact]
    public void IntermediatesSeenThroughKernelViewsStillReturnToThePool()
    {
        // softmax over axis 0 and the sum over axis 0 both read their input through a permuted view;
        // those views must not keep the intermediates' buffers out of the pool.
        var x = Tensor.RandomNormal([64, 48], seed: 6);
        var y = (x * 2).Softmax(0).Exp().Sum([0]);
        long before = BufferPool.Returns;
        y.Eval();
        Assert.True(BufferPool.Returns - before >= 3, $"expected x*2, softmax and exp buffers back in the pool, got {BufferPool.Returns - before}");
        var reference = (x * 2).Softmax(0).Exp().ToArray<float>();
        var sums = y.ToArray<float>();
        for (int j = 0; j < 48; j++)
        {
            double s = 0;
            for (int i = 0; i < 64; i++) s += reference[i * 48 + j];
            Assert.Equal(s, sums[j], 1e-4);
        }
    }
}
