// Without a GPU: how a capture assigns plan nodes to the graph stream (0) and side streams. A chain stays on one
// stream; a second consumer of a value, or work that needs nothing computed, forks onto the least recently used
// stream; a node continues the stream whose last node it reads; staged uploads (to_device) take none.
using Kiln.Cuda.Backend;
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Cuda.Tests;

public class StreamScheduleTests
{
    private static readonly Node Any = Tensor.RandomNormal([4], 1).Exp().Node;
    private static readonly Node Upload = new(OpTable.ToDevice, [Any], new DeviceAttrs(Device.Cpu), [4], DType.Float32, Device.Cpu);

    /// <summary>A plan over <paramref name="inputs"/> (≥ 0: an earlier node, &lt; 0: a plan input); only what Schedule reads.</summary>
    private static Plan PlanOf(int[][] inputs, int upload = -1) => new()
    {
        Nodes = inputs.Select((_, i) => i == upload ? Upload : Any).ToArray(),
        Inputs = inputs, Consumers = new int[inputs.Length], Levels = [], Outputs = [], OwnersOf = new int[inputs.Length][],
    };

    [Fact]
    public void A_chain_stays_on_the_graph_stream()
    {
        Assert.Equal([0, 0, 0, 0], CudaBackend.Schedule(PlanOf([[~0], [0], [1], [2, ~1]]), 4));
    }

    [Fact]
    public void A_second_consumer_forks_and_the_join_follows_its_first_input()
    {
        // n0 ← x; n1 ← n0; n2 ← n0 (n0 is no longer stream 0's last node: fork); n3 ← n1, n2 (continues stream 0).
        Assert.Equal([0, 0, 1, 0], CudaBackend.Schedule(PlanOf([[~0], [0], [0], [1, 2]]), 4));
        // n3 ← n2, n1: continues the side stream, whose last node is n2.
        Assert.Equal([0, 0, 1, 1], CudaBackend.Schedule(PlanOf([[~0], [0], [0], [2, 1]]), 4));
    }

    [Fact]
    public void Independent_work_spreads_over_the_least_recently_used_streams()
    {
        // Five nodes reading only plan inputs (q, k, v projections and more) on three streams plus the graph stream.
        Assert.Equal([0, 1, 2, 3, 0], CudaBackend.Schedule(PlanOf([[~0], [~0], [~1], [~0], [~2]]), 4));
        Assert.Equal([0, 0, 0], CudaBackend.Schedule(PlanOf([[~0], [~0], [~1]]), 1));   // no side streams: one stream
    }

    [Fact]
    public void Staged_uploads_take_no_stream_and_are_no_dependency()
    {
        // n0 = upload of input 0; n1 ← n0 and n2 ← n0 depend on nothing computed: they start two streams.
        Assert.Equal([-1, 0, 1], CudaBackend.Schedule(PlanOf([[~0], [0], [0]], upload: 0), 4));
    }
}
