// Many threads building and evaluating overlapping graphs at once: shared leaves, shared *unevaluated*
// intermediates that some threads request directly while others consume them inside bigger graphs. Every
// value must be bit-identical to a single-threaded evaluation of identically built graphs.
namespace Kiln.Tests.Ops;

public class ConcurrencyTests
{
    private const int Threads = 16;

    /// <summary>Leaves shared by every thread (realised, read-only).</summary>
    private sealed record Leaves(Tensor A, Tensor B, Tensor C, Tensor W);

    private static Leaves MakeLeaves() => new(
        Nd.Random([24, 40], 1).ToTensor(DType.Float32),
        Nd.Random([40, 32], 2).ToTensor(DType.Float32),
        Nd.Random([24, 32], 3).ToTensor(DType.Float32),
        Nd.Random([32], 4, 0.5, 1.5).ToTensor(DType.Float32));

    /// <summary>Intermediates shared by every thread of one round, built but not evaluated.</summary>
    private sealed record Shared(Tensor S1, Tensor S2, Tensor S3, Tensor S4);

    private static Shared MakeShared(Leaves l)
    {
        var s1 = l.A.MatMul(l.B);                              // (24, 32)
        var s2 = (s1.Silu() + l.C) * 0.5;                      // (24, 32)
        var s3 = Kiln.Ops.RmsNorm(s2, l.W).Softmax(-1);        // (24, 32)
        var s4 = s2.Sum([0]);                                  // (32,)
        return new(s1, s2, s3, s4);
    }

    /// <summary>Thread t's output: a graph over the shared intermediates, different per t % 6.</summary>
    private static Tensor MakeOutput(int t, Shared s, Leaves l) => (t % 6) switch
    {
        0 => s.S3.MatMul(s.S1.T).Sum([1]),
        1 => (s.S2.Exp() * (t + 1)).Mean([0]) + s.S4,
        2 => Kiln.Ops.LayerNorm(s.S1 + s.S3, l.W, s.S4 * 0.01),
        3 => s.S3.LogSoftmax(0).Max([1]) - s.S1.Min([1]),
        4 => Kiln.Ops.Concat([s.S2, s.S3, s.S1.Tanh()], 1).Var([1]),
        _ => (s.S4.Reshape(1, 32) * s.S2).Sum() + s.S1.Square().Sum(),
    };

    private static uint[] Bits(Tensor t) => t.ToArray<float>().Select(BitConverter.SingleToUInt32Bits).ToArray();

    /// <summary>Runs body(t) on 16 dedicated threads released together by a barrier; rethrows the first failure.</summary>
    private static void RunTogether(Action<int> body)
    {
        using var barrier = new Barrier(Threads);
        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try { barrier.SignalAndWait(); body(t); }
            catch (Exception e) { errors.Enqueue(e); }
        })).ToArray();
        foreach (var th in threads) th.Start();
        foreach (var th in threads) th.Join();
        if (errors.TryDequeue(out var first)) throw new AggregateException($"{errors.Count + 1} thread(s) failed", [first, .. errors]);
    }

    [Fact]
    public void OverlappingGraphsEvaluatedConcurrentlyAreBitwiseEqualToSingleThreaded()
    {
        var leaves = MakeLeaves();

        // Single-threaded reference: identical construction, evaluated one graph at a time.
        var expected = new uint[Threads][];
        var refShared = MakeShared(leaves);
        var expectedShared = new[] { Bits(refShared.S1), Bits(refShared.S2), Bits(refShared.S3), Bits(refShared.S4) };
        for (int t = 0; t < Threads; t++) expected[t] = Bits(MakeOutput(t, MakeShared(leaves), leaves));

        const int Rounds = 40;
        for (int round = 0; round < Rounds; round++)
        {
            var shared = MakeShared(leaves);
            var got = new uint[Threads][];
            var gotShared = new uint[Threads][];
            RunTogether(t =>
            {
                var y = MakeOutput(t, shared, leaves);
                // Some threads request a shared intermediate directly (publishing it into its node) while the
                // others are evaluating graphs that contain it as an unrequested intermediate.
                switch (t % 4)
                {
                    case 0: gotShared[t] = Bits(shared.S2); got[t] = Bits(y); break;
                    case 1: got[t] = Bits(y); gotShared[t] = Bits(shared.S1); break;
                    case 2: Tensor.Eval(y, shared.S3); got[t] = Bits(y); gotShared[t] = Bits(shared.S3); break;
                    default: got[t] = Bits(y); gotShared[t] = Bits(shared.S4); break;
                }
            });
            for (int t = 0; t < Threads; t++)
            {
                Assert.True(expected[t].SequenceEqual(got[t]), $"round {round}: output of thread {t} differs from the single-threaded evaluation");
                Assert.True(expectedShared[new[] { 1, 0, 2, 3 }[t % 4]].SequenceEqual(gotShared[t]), $"round {round}: shared intermediate read by thread {t} differs");
            }
            // After the round, every shared node that was published still holds its value (nothing recycled it).
            Assert.True(expectedShared[0].SequenceEqual(Bits(shared.S1)), $"round {round}: S1 changed after the round");
            Assert.True(expectedShared[1].SequenceEqual(Bits(shared.S2)), $"round {round}: S2 changed after the round");
            Assert.True(expectedShared[2].SequenceEqual(Bits(shared.S3)), $"round {round}: S3 changed after the round");
            Assert.True(expectedShared[3].SequenceEqual(Bits(shared.S4)), $"round {round}: S4 changed after the round");
        }
    }

    [Fact]
    public void SameOutputEvaluatedByManyThreadsAtOnce()
    {
        var leaves = MakeLeaves();
        var expected = Bits(MakeOutput(0, MakeShared(leaves), leaves));
        for (int round = 0; round < 20; round++)
        {
            var y = MakeOutput(0, MakeShared(leaves), leaves);
            var got = new uint[Threads][];
            RunTogether(t => got[t] = Bits(y));
            for (int t = 0; t < Threads; t++) Assert.True(expected.SequenceEqual(got[t]), $"round {round}: thread {t} read a different value");
            Assert.True(expected.SequenceEqual(Bits(y)), $"round {round}: cached value changed");
        }
    }

    [Fact]
    public void NodeIdsAreUniqueAcrossThreads()
    {
        const int PerThread = 2000;
        var shared = Tensor.Ones([4]);
        var ids = new long[Threads][];
        RunTogether(t =>
        {
            var mine = new long[PerThread * 2];
            var x = shared;
            for (int i = 0; i < PerThread; i++)
            {
                var c = Tensor.Scalar(i);
                x = x + c;
                mine[2 * i] = c.Node.Id;
                mine[2 * i + 1] = x.Node.Id;
            }
            ids[t] = mine;
        });
        var all = ids.SelectMany(a => a).ToArray();
        Assert.Equal(all.Length, all.Distinct().Count());
        // Within a thread, ids increase in creation order.
        foreach (var mine in ids) Assert.True(mine.Zip(mine.Skip(1)).All(p => p.First < p.Second), "ids are not increasing within a thread");
    }
}
