// A plan: the optimized, scheduled form of one graph structure, reusable for every graph with the same
// PlanKey. Its nodes are templates (op, attributes, shape, dtype for the kernels; their inputs are
// value-less placeholders), so a cached plan holds no user data. Inputs are bound per run as slot values.
using Kiln.Graph;
using Kiln.Passes;

namespace Kiln.Runtime;

internal sealed class Plan
{
    public required Node[] Nodes;       // templates, topological
    public required int[][] Inputs;     // >= 0: index into Nodes; < 0: slot ~code
    public required int[] Consumers;    // uses by later plan nodes
    public required int[][] Levels;
    public required int[] Outputs;      // per requested node: index into Nodes, or ~slot when it optimized to an input
    public required int[][] OwnersOf;   // per plan node: the requested-node positions it is published to
    /// <summary>Fills made by constant folding, bound after the slots (one element, zero strides: structure, not data).</summary>
    public Realised[] Constants = [];
    /// <summary>The accelerator every node runs on (uploads of the plan's own inputs allowed), else null: such a
    /// plan may be handed whole to that device's plan runner.</summary>
    public Device? Accelerator { get; private init; }

    /// <summary>Every node runs on the CPU (only then do a level's independent nodes run in parallel).</summary>
    public bool AllOnCpu { get; private init; }

    /// <summary>
    /// Per level: more than one node and enough elements in all (Par.MinElementsPerThread) for running its nodes
    /// at once to beat the fork/join (~5-20 µs). A decode step's levels are a few hundred elements each: run one
    /// after another they are faster (each kernel still splits its own work across threads when it is big).
    /// </summary>
    public bool[] LevelsWorthParallel => _worth ??= Levels.Select(level =>
        level.Length > 1 && level.Sum(i => Shapes.Numel(Nodes[i].Shape)) >= Cpu.Par.MinElementsPerThread).ToArray();
    private bool[]? _worth;

    /// <summary>Where each intermediate lives in the plan's CPU arenas (made on the first run; a cache hit reuses it).</summary>
    public MemoryPlan Memory => _memory ??= MemoryPlan.Build(this);
    private MemoryPlan? _memory;

    /// <summary>What the optimizer did (for KILN_LOG=plan); no nodes, so the plan holds no user data.</summary>
    public (int NodesBefore, int Sweeps, Dictionary<string, int> Rewrites)? Optimization;

    /// <summary>Builds the plan for the graph a key walk saw: optimize, schedule, swap in placeholder inputs.</summary>
    public static Plan Build(PlanKey.Walk walk, bool optimize)
    {
        // The graph as the key walk saw it: its slots are the inputs, even if another thread has realised
        // more of it since (those nodes are computed again rather than changing the plan's shape).
        var slotOf = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        for (int s = 0; s < walk.SlotNodes.Length; s++) slotOf[walk.SlotNodes[s]] = s;
        // Fills made by constant folding are inputs too: they get slots after the key's (Constants).
        bool IsInput(Node n) => slotOf.ContainsKey(n) || ConstantFolding.IsFill(n);
        var constants = new List<Realised>();
        var constantOf = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        OptimizeResult? opt = optimize ? GraphOptimizer.Optimize(walk.Requested, isInput: IsInput) : null;
        var targets = opt?.Outputs ?? walk.Requested;
        var sched = Schedule.Build(targets.Where(t => !IsInput(t)).ToArray(), IsInput);
        var index = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < sched.Nodes.Length; i++) index[sched.Nodes[i]] = i;
        int Code(Node n) => index.TryGetValue(n, out int i) ? i
            : slotOf.TryGetValue(n, out int s) ? ~s
            : ConstantFolding.IsFill(n) ? ~(walk.SlotNodes.Length + ConstantIndex(n))
            : throw new InvalidOperationException($"internal: plan input {n} is neither computed nor a slot");

        var nodes = new Node[sched.Nodes.Length];
        var inputs = new int[nodes.Length][];
        for (int i = 0; i < nodes.Length; i++)
        {
            var n = sched.Nodes[i];
            var ins = n.InputArray;
            inputs[i] = ins.Select(Code).ToArray();
            var placeholders = ins.Select(x => new Node(OpTable.Constant, [], null, x.Shape, x.DType, x.Device)).ToArray();
            nodes[i] = new Node(n.Op, placeholders, n.Attrs, n.Shape, n.DType, n.Device);
        }
        var outputs = targets.Select(Code).ToArray();
        var owners = new List<int>[nodes.Length];
        for (int k = 0; k < outputs.Length; k++)
            if (outputs[k] >= 0) (owners[outputs[k]] ??= []).Add(k);
        return new Plan
        {
            Nodes = nodes, Inputs = inputs, Consumers = sched.Consumers, Levels = sched.Levels, Outputs = outputs,
            OwnersOf = owners.Select(o => o?.ToArray() ?? []).ToArray(),
            Optimization = opt is null ? null : (opt.NodesBefore, opt.Sweeps, opt.Rewrites),
            Constants = [.. constants],
            Accelerator = AcceleratorOf(nodes, inputs),
            AllOnCpu = nodes.All(n => n.Device.Kind == DeviceKind.Cpu),
        };

        static Device? AcceleratorOf(Node[] nodes, int[][] inputs)
        {
            if (nodes.Length == 0 || nodes[0].Device.Kind == DeviceKind.Cpu) return null;
            var d = nodes[0].Device;
            for (int i = 0; i < nodes.Length; i++)
                if (!nodes[i].Device.Equals(d) || (ReferenceEquals(nodes[i].Op, OpTable.ToDevice) && inputs[i][0] >= 0)) return null;
            return d;
        }

        int ConstantIndex(Node n)
        {
            if (!constantOf.TryGetValue(n, out int k)) { constantOf[n] = k = constants.Count; constants.Add(n.Value!); }
            return k;
        }
    }
}
