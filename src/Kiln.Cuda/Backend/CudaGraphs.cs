// Batched submission: a plan that runs a second time is captured once into a CUDA Graph and from then on
// replayed as one submission (cuGraphLaunch) instead of one launch per kernel. Capturing needs stable
// addresses, so the plan gets its own memory: its inputs are staged into dense buffers it owns (a copy is
// skipped when an input is the same immutable value as last time), and every intermediate comes from an
// arena recorded during a preparing run and handed out again, in the same order, while capturing. Outputs
// are copied out of the arena into fresh buffers, so a replay never overwrites what a user holds.
// KILN_DISABLE=cudagraph runs the same kernels with plain launches.
using System.Runtime.CompilerServices;
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Cuda.Backend;

internal sealed partial class CudaBackend : IPlanRunner
{
    private readonly ConditionalWeakTable<Plan, PlanGraph> _graphs = new();
    private CudaStream? _streamField;
    private CudaStream? _current;   // null: the legacy default stream (eager); the graph stream while capturing or replaying
    private Arena? _arena;

    /// <summary>Graphs captured and replays launched (tests check that a plan hit does not capture again).</summary>
    public long Captures, Replays;

    /// <summary>Test hook: false runs every plan node by node (as KILN_DISABLE=cudagraph does).</summary>
    internal static bool GraphsEnabled = !Settings.IsDisabled("cudagraph");

    private CudaStream GraphStream => _streamField ??= new CudaStream(_context, nonBlocking: false);

    public Dictionary<int, Realised>? TryRun(Plan plan, Realised[] inputs)
    {
        if (!GraphsEnabled || plan.Nodes.Any(ReadsHostScalar)) return null;
        var pg = _graphs.GetValue(plan, _ => new PlanGraph());
        lock (pg)
        {
            if (pg.Failed is not null || ++pg.Runs == 1) return null;   // a one-off plan runs eagerly, uncaptured
            _context.MakeCurrent();
            _current = GraphStream;
            try
            {
                if (pg.Exec is null) Capture(plan, inputs, pg);
                Stage(inputs, pg);
                pg.Exec!.Launch(GraphStream);
                Interlocked.Increment(ref Replays);
                var outs = new Dictionary<int, Realised>();
                foreach (var (i, v) in pg.Outputs) outs[i] = Copy(v);
                return outs;
            }
            catch (CudaException e) when (pg.Exec is null)
            {
                // A plan that cannot be captured keeps running eagerly; why is kept for KILN_LOG=plan and tests.
                pg.Failed = e.Message;
                if (Settings.Log.Contains("plan")) Console.Error.WriteLine($"[kiln cuda] plan not captured, running eagerly: {e.Message}");
                return null;
            }
            finally { _current = null; _arena = null; }
        }
    }

    /// <summary>Ops whose CUDA form reads a count back to the host (decode with a KV cache): not capturable.</summary>
    private static bool ReadsHostScalar(Node n) =>
        (ReferenceEquals(n.Op, OpTable.Attention) && n.InputArray.Length == 4) || (ReferenceEquals(n.Op, OpTable.Rope) && n.InputArray.Length == 2);

    private void Capture(Plan plan, Realised[] inputs, PlanGraph pg)
    {
        pg.Staged = inputs.Select(v => Realised.Contiguous(new Runtime.Buffer(v.DType, CudaMemory.Pinned(_alloc, Math.Max(v.Numel, 1) * v.DType.SizeInBytes()), v.Numel), v.Shape)).ToArray();
        pg.Sources = new Realised?[inputs.Length];
        Stage(inputs, pg);
        // Preparing run: compiles kernels, uploads their metadata and records the arena (all outside capture).
        _arena = new Arena(_alloc);
        ExecuteAll(plan, pg.Staged);
        _arena.Replay();
        GraphStream.BeginCapture(StreamCaptureMode.ThreadLocal);
        Realised[] vals;
        try { vals = ExecuteAll(plan, pg.Staged); }
        catch { try { GraphStream.EndCapture().Dispose(); } catch (CudaException) { } throw; }
        using var graph = GraphStream.EndCapture();
        pg.Exec = graph.Instantiate();
        pg.Arena = _arena;
        _arena = null;   // the outputs' copies below come from the ordinary allocator
        pg.Outputs = plan.OwnersOf.Select((o, i) => (o, i)).Where(t => t.o.Length > 0).Select(t => (t.i, vals[t.i])).ToArray();
        Interlocked.Increment(ref Captures);
    }

    /// <summary>Runs the plan's nodes in order over device inputs; every value is kept (they live in the arena).</summary>
    private Realised[] ExecuteAll(Plan plan, Realised[] inputs)
    {
        var vals = new Realised[plan.Nodes.Length];
        for (int i = 0; i < plan.Nodes.Length; i++)
        {
            var codes = plan.Inputs[i];
            var ins = new Realised[codes.Length];
            for (int k = 0; k < codes.Length; k++) ins[k] = codes[k] >= 0 ? vals[codes[k]] : inputs[~codes[k]];
            vals[i] = ReferenceEquals(plan.Nodes[i].Op, OpTable.ToDevice)
                ? new Realised(ins[0].Buffer, ins[0].Offset, ins[0].Shape, ins[0].Strides)   // an upload of an input: staging did it
                : Execute(plan.Nodes[i], ins);
        }
        return vals;
    }

    /// <summary>Copies each input into the plan's staging buffer unless it is the very value staged last time.</summary>
    private void Stage(Realised[] inputs, PlanGraph pg)
    {
        for (int k = 0; k < inputs.Length; k++)
        {
            var v = inputs[k];
            var last = pg.Sources![k];
            if (last is not null && ReferenceEquals(last.Buffer, v.Buffer) && last.Offset == v.Offset && last.Strides.AsSpan().SequenceEqual(v.Strides)) continue;
            if (!v.Buffer.OnDevice) v = Upload(v);
            Copy(v, into: pg.Staged![k]);
            pg.Sources[k] = inputs[k];   // kept alive so its buffer cannot be reused under the same identity
        }
    }

    private sealed class PlanGraph
    {
        public int Runs;
        public string? Failed;
        public CudaGraphExec? Exec;
        public Arena? Arena;
        public Realised[]? Staged;
        public Realised?[]? Sources;
        public (int Node, Realised Value)[] Outputs = [];
    }

    /// <summary>Intermediate memory of one captured plan: recorded in order, then handed out again in order.</summary>
    private sealed class Arena(CudaAllocator alloc)
    {
        private readonly List<CudaMemory> _blocks = [];
        private int _next = -1;

        public void Replay() => _next = 0;

        public CudaMemory Rent(long bytes)
        {
            if (_next < 0)
            {
                var m = CudaMemory.Pinned(alloc, bytes);
                _blocks.Add(m);
                return m;
            }
            if (_next >= _blocks.Count || _blocks[_next].Bytes < bytes)
                throw new CudaException("capture", 0, "KILN_ARENA_MISMATCH", "the captured run allocated differently from the preparing run", $"allocation {_next}");
            return _blocks[_next++];
        }
    }
}
