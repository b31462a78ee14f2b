// Memory planning for a CPU plan: every intermediate value gets a place in one arena per dtype, chosen from the
// plan's levels so that values alive at the same time never share memory and values that are not do. The plan
// is made once per cached plan (a plan-cache hit skips it) and each run rents the arenas once instead of one
// pooled buffer per kernel.
//
// How a kernel gets its place: the evaluator sets BufferPool.Planned before running the node, and the kernel's
// first Rent of exactly that dtype and length takes the slice. Safety does not rest on the static liveness alone:
// a slice is handed out only when every value that used overlapping memory earlier has been released (its
// buffer's user count is 0), so a view or an in-place result that outlives its planned lifetime makes the node
// fall back to the pool; and a published value is never left in an arena (Evaluator copies it out).
using Kiln.Graph;

namespace Kiln.Runtime;

internal sealed class MemoryPlan
{
    /// <summary>Arena slices are aligned to this many elements (64 bytes of fp32), so vector loads stay aligned.</summary>
    private const int Align = 16;

    private static long _slicesUsed, _fallbacks, _copiedOut;

    /// <summary>Kernels that ran in their planned arena slice (process total; tests and KILN_LOG=eval).</summary>
    public static long SlicesUsed => Interlocked.Read(ref _slicesUsed);

    /// <summary>Planned nodes that ran in a pooled buffer because memory they were to reuse was still referenced.</summary>
    public static long Fallbacks => Interlocked.Read(ref _fallbacks);

    /// <summary>Published values that were in an arena (a kernel handed back its input's memory) and were copied out.</summary>
    public static long CopiedOut => Interlocked.Read(ref _copiedOut);

    internal static void CountCopiedOut() => Interlocked.Increment(ref _copiedOut);

    /// <summary>Switched off with KILN_DISABLE=arena (then every kernel rents from the pool, as before).</summary>
    internal static bool Enabled = !Settings.IsDisabled("arena");

    /// <summary>Per node: its arena slice (dtype, first element, length), or Length 0 when it is not planned.</summary>
    public readonly (DType DType, int Start, long Length)[] Slots;

    /// <summary>Per node: earlier planned nodes whose slices overlap its own (their values must be released first).</summary>
    public readonly int[][] Earlier;

    /// <summary>Per node: the first and last level its memory may be read in (its own level to its last reader's,
    /// through views).</summary>
    public readonly (int First, int Last)[] Lifetimes;

    /// <summary>Elements of each dtype's arena (0: no arena of that dtype).</summary>
    public readonly long[] ArenaElements;

    /// <summary>Elements all planned values would take with one buffer each (what the arena saves against).</summary>
    public readonly long[] UnplannedElements;

    /// <summary>Whether any value is planned (a run without one rents and tracks nothing).</summary>
    public bool HasArena => ArenaElements.Any(e => e > 0);

    private MemoryPlan((DType, int, long)[] slots, int[][] earlier, (int, int)[] lifetimes, long[] arena, long[] unplanned)
    {
        Slots = slots; Earlier = earlier; Lifetimes = lifetimes; ArenaElements = arena; UnplannedElements = unplanned;
    }

    /// <summary>"N values in X MiB of arena (Y MiB as one buffer each)" for KILN_LOG=plan.</summary>
    public string Describe()
    {
        long planned = Slots.Count(s => s.Length > 0), arena = 0, separate = 0;
        for (int d = 0; d < ArenaElements.Length; d++)
        {
            arena += ArenaElements[d] * ((DType)d).SizeInBytes();
            separate += UnplannedElements[d] * ((DType)d).SizeInBytes();
        }
        return $"{planned} of {Slots.Length} values in {arena / 1048576.0:F2} MiB of arena ({separate / 1048576.0:F2} MiB as one buffer each)";
    }

    public static MemoryPlan Build(Plan plan)
    {
        int n = plan.Nodes.Length;
        var level = new int[n];
        for (int l = 0; l < plan.Levels.Length; l++) foreach (int i in plan.Levels[l]) level[i] = l;
        var consumers = new List<int>[n];
        for (int i = 0; i < n; i++)
            foreach (int j in plan.Inputs[i])
                if (j >= 0) (consumers[j] ??= []).Add(i);

        // Last level that may read a node's memory, and whether it may reach a published value: through views and
        // ops that may hand back their input's memory (in place), both extend to that consumer's own reach.
        var end = new int[n];
        var escapes = new bool[n];
        for (int i = n - 1; i >= 0; i--)   // nodes are topological: consumers come later
        {
            end[i] = level[i];
            escapes[i] = plan.OwnersOf[i].Length > 0;
            foreach (int c in consumers[i] ?? [])
            {
                bool aliases = MayAlias(plan.Nodes[c].Op);
                end[i] = Math.Max(end[i], aliases ? end[c] : level[c]);
                escapes[i] |= aliases && escapes[c];
            }
        }

        int dtypes = Enum.GetValues<DType>().Length;
        var slots = new (DType, int, long)[n];
        var arena = new long[dtypes];
        var unplanned = new long[dtypes];
        var placed = new List<int>[dtypes];
        // Largest first: a greedy fit packs best when the big values choose their places before the small ones.
        var order = Enumerable.Range(0, n).Where(i => Plannable(plan.Nodes[i]) && !escapes[i])
            .OrderByDescending(i => Shapes.Numel(plan.Nodes[i].Shape)).ThenBy(i => i);
        foreach (int i in order)
        {
            var node = plan.Nodes[i];
            long len = Shapes.Numel(node.Shape);
            long size = (len + Align - 1) / Align * Align;
            int d = (int)node.DType;
            var live = (placed[d] ??= []).Where(j => level[j] <= end[i] && level[i] <= end[j])
                .Select(j => (Start: (long)slots[j].Item2, End: slots[j].Item2 + (slots[j].Item3 + Align - 1) / Align * Align))
                .OrderBy(r => r.Start);
            long at = 0;
            foreach (var (s, e) in live)
            {
                if (s >= at + size) break;   // the gap before this one fits
                at = Math.Max(at, e);
            }
            if (at + size > 1L << 30) continue;   // the pool rounds up to a power of two and an array holds < 2^31 elements: leave it to the pool
            slots[i] = (node.DType, (int)at, len);
            placed[d].Add(i);
            arena[d] = Math.Max(arena[d], at + size);
            unplanned[d] += len;
        }

        var earlier = new int[n][];
        for (int i = 0; i < n; i++)
        {
            if (slots[i].Item3 == 0) { earlier[i] = []; continue; }
            var (dt, s0, l0) = slots[i];
            earlier[i] = placed[(int)dt].Where(j => j != i && end[j] < level[i]
                && slots[j].Item2 < s0 + l0 && s0 < slots[j].Item2 + slots[j].Item3).ToArray();
        }
        return new MemoryPlan(slots, earlier, Enumerable.Range(0, n).Select(i => (level[i], end[i])).ToArray(), arena, unplanned);
    }

    /// <summary>A CPU kernel's own result (not a view, not a transfer) of a dtype the pool rents.</summary>
    private static bool Plannable(Node n) =>
        n.Device.Kind == DeviceKind.Cpu && n.Op.Fusion != FusionClass.View && !ReferenceEquals(n.Op, OpTable.ToDevice)
        && Shapes.Numel(n.Shape) > 0;

    /// <summary>Ops whose result may share its input's memory: views. (matmul_program runs in place over the product it
    /// computes itself, never over an input; anything else that hands back an input is caught at run time.)</summary>
    private static bool MayAlias(OpDef op) => op.Fusion == FusionClass.View;

    /// <summary>One run's arenas and the slices handed out so far.</summary>
    public sealed class Run
    {
        private readonly MemoryPlan plan;
        private readonly Buffer?[] _arenas;
        private readonly Buffer?[] _handed;

        public Run(MemoryPlan plan)
        {
            this.plan = plan;
            _handed = new Buffer?[plan.Slots.Length];
            _arenas = new Buffer?[plan.ArenaElements.Length];
            for (int d = 0; d < _arenas.Length; d++)
                if (plan.ArenaElements[d] > 0) _arenas[d] = BufferPool.RentAtLeast((DType)d, plan.ArenaElements[d]);
        }

        /// <summary>The slice planned for node <paramref name="i"/>, if its memory is free now; null otherwise.</summary>
        public Buffer? SliceFor(int i)
        {
            var (dtype, start, length) = plan.Slots[i];
            if (length == 0) return null;
            foreach (int j in plan.Earlier[i])
                if (_handed[j] is { } b && Volatile.Read(ref b.Users) > 0)
                {
                    Interlocked.Increment(ref _fallbacks);
                    return null;
                }
            return _handed[i] = new Buffer(dtype, _arenas[(int)dtype]!.Data, start, length);
        }

        /// <summary>Counts whether node <paramref name="i"/>'s kernel took its slice.</summary>
        public void Taken(int i, Realised result)
        {
            if (_handed[i] is { } b && ReferenceEquals(result.Buffer, b)) Interlocked.Increment(ref _slicesUsed);
        }

        /// <summary>Gives the arenas back to the pool (every value in them has been released or copied out).</summary>
        public void Return()
        {
            foreach (var a in _arenas) if (a is not null) BufferPool.Return(a);
        }
    }
}
