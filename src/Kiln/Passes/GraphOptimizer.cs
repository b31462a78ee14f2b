// The graph optimizer: rebuilds the unrealised part of a graph bottom-up, applying every enabled pass to
// each node (inputs first, so patterns see optimized inputs) and merging structurally equal nodes (CSE),
// until a whole sweep changes nothing. Nodes are never edited: the result is a new set of output nodes.
// Dead code never survives, since only what the outputs reach is rebuilt.
using System.Runtime.CompilerServices;
using Kiln.Graph;

namespace Kiln.Passes;

internal sealed record OptimizeResult(Node[] Outputs, Dictionary<string, int> Rewrites, int Sweeps, int NodesBefore)
{
    /// <summary>Unrealised nodes left to run (counted on demand: it walks the graph).</summary>
    public int NodesAfter => GraphOptimizer.CountUnrealised(Outputs);
}

internal static class GraphOptimizer
{
    private const int MaxSweeps = 8;
    private const int MaxLocalRewrites = 16;

    /// <summary>The passes in the order they are tried on each node.</summary>
    private static readonly IRewritePass[] Passes = [new ConstantFolding(), new SimplifyPass(), new SoftmaxRecognition(), new RmsNormRecognition(), new LayerNormRecognition(), new LoraFusion(), new EpilogueFusion(), new SwiGluFusion(), new CrossEntropyRecognition(), new AttentionFusion(), new ResidualFusion()];

    /// <summary>Steps that KILN_DISABLE=fusion switches off together.</summary>
    private static readonly HashSet<string> FusionSteps = ["softmax", "rmsnorm", "layernorm", "lora", "epilogue", "swiglu", "crossentropy", "attention", "residual", ElementwiseFusion.Name, ReductionPrologueFusion.Name, MatMulProgramFusion.Name];

    /// <summary>Names of every switchable step (passes plus "cse"), for KILN_DISABLE and the docs.</summary>
    public static IEnumerable<string> StepNames => Passes.Select(p => p.Name).Append("cse").Append(ElementwiseFusion.Name).Append(ReductionPrologueFusion.Name).Append(MatMulProgramFusion.Name);

    /// <param name="isInput">Which nodes are fixed inputs (default: realised ones); the plan passes its slots.</param>
    public static OptimizeResult Optimize(Node[] outputs, Func<string, bool>? enabled = null, Func<Node, bool>? isInput = null)
    {
        isInput ??= n => n.IsRealised;
        enabled ??= name => !Settings.IsDisabled(name) && !(FusionSteps.Contains(name) && Settings.IsDisabled("fusion"));
        var passes = Passes.Where(p => enabled(p.Name)).ToArray();
        bool cse = enabled("cse");
        var counts = new Dictionary<string, int>();
        int before = 0;
        var current = outputs;
        int sweeps = 0;
        while (sweeps < MaxSweeps)
        {
            sweeps++;
            int rewrites = 0;
            current = Sweep(current, passes, cse, isInput, counts, ref rewrites, ref before);
            if (rewrites == 0) break;
        }
        // Fusion needs the final graph's consumer counts, so it runs once the rewrites have settled.
        if (enabled(ElementwiseFusion.Name))
        {
            current = ElementwiseFusion.Apply(current, isInput, out int groups);
            if (groups > 0) counts[ElementwiseFusion.Name] = groups;
            if (enabled(ReductionPrologueFusion.Name))
            {
                current = ReductionPrologueFusion.Apply(current, isInput, out int folded);
                if (folded > 0) counts[ReductionPrologueFusion.Name] = folded;
            }
            if (enabled(MatMulProgramFusion.Name))
            {
                current = MatMulProgramFusion.Apply(current, isInput, out int programs);
                if (programs > 0) counts[MatMulProgramFusion.Name] = programs;
            }
        }
        for (int i = 0; i < outputs.Length; i++)
            if (!Shapes.Equal(current[i].Shape, outputs[i].Shape) || current[i].DType != outputs[i].DType)
                throw new InvalidOperationException($"internal: optimizing {outputs[i]} gave {current[i]} (shape or dtype changed)");
        return new OptimizeResult(current, counts, sweeps, before);
    }

    private static Node[] Sweep(Node[] outputs, IRewritePass[] passes, bool cse, Func<Node, bool> isInput, Dictionary<string, int> counts, ref int rewrites, ref int firstCount)
    {
        var map = new Dictionary<Node, Node>(ReferenceEqualityComparer.Instance);
        var canonical = new Dictionary<NodeKey, Node>();
        var order = GraphWalk.Topological(outputs, isInput);
        if (firstCount == 0) firstCount = order.Count;
        var uses = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        foreach (var n in order) foreach (var i in n.InputArray) uses[i] = uses.GetValueOrDefault(i) + 1;
        foreach (var o in outputs) uses[o] = uses.GetValueOrDefault(o) + 1;
        var consumers = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);   // of the rewritten nodes
        PatternHelpers.Consumers = consumers;
        try { SweepNodes(order, map, canonical, uses, consumers, passes, cse, isInput, counts, ref rewrites); }
        finally { PatternHelpers.Consumers = null; }
        return outputs.Select(o => map.TryGetValue(o, out var m) ? m : o).ToArray();
    }

    private static void SweepNodes(List<Node> order, Dictionary<Node, Node> map, Dictionary<NodeKey, Node> canonical, Dictionary<Node, int> uses,
        Dictionary<Node, int> consumers, IRewritePass[] passes, bool cse, Func<Node, bool> isInput, Dictionary<string, int> counts, ref int rewrites)
    {
        foreach (var n in order)
        {
            var ins = n.InputArray;
            Node[]? mapped = null;
            for (int k = 0; k < ins.Length; k++)
                if (map.TryGetValue(ins[k], out var m) && !ReferenceEquals(m, ins[k]))
                    (mapped ??= (Node[])ins.Clone())[k] = m;
            var node = mapped is null ? n : new Node(n.Op, mapped, n.Attrs, n.Shape, n.DType, n.Device);
            for (int step = 0; step < MaxLocalRewrites; step++)
            {
                Node? next = null;
                foreach (var p in passes)
                {
                    next = p.Rewrite(node, isInput);
                    if (next is null) continue;
                    if (!Shapes.Equal(next.Shape, node.Shape) || next.DType != node.DType)
                        throw new InvalidOperationException($"internal: pass {p.Name} rewrote {node} to {next} (shape or dtype changed)");
                    Count(counts, p.Name); rewrites++;
                    break;
                }
                if (next is null) break;
                node = next;
            }
            if (cse && !isInput(node) && node.InputArray.Length > 0)
            {
                var key = new NodeKey(node);
                if (canonical.TryGetValue(key, out var same)) { node = same; Count(counts, "cse"); rewrites++; }
                else canonical[key] = node;
            }
            map[n] = node;
            consumers[node] = consumers.GetValueOrDefault(node) + uses.GetValueOrDefault(n);
        }
    }

    private static void Count(Dictionary<string, int> counts, string name) => counts[name] = counts.GetValueOrDefault(name) + 1;

    internal static int CountUnrealised(Node[] outputs) => GraphWalk.Topological(outputs, n => n.IsRealised).Count;

    /// <summary>What makes two computed nodes interchangeable: op, attributes, the same input nodes, shape, dtype.</summary>
    private readonly struct NodeKey(Node n) : IEquatable<NodeKey>
    {
        private readonly Node _n = n;
        private readonly int _hash = Hash(n);

        private static int Hash(Node n)
        {
            var h = new HashCode();
            h.Add(n.Op.Name);
            n.Attrs?.AddTo(ref h);
            foreach (var i in n.InputArray) h.Add(RuntimeHelpers.GetHashCode(i));
            foreach (int d in n.Shape) h.Add(d);
            h.Add(n.DType);
            return h.ToHashCode();
        }

        public bool Equals(NodeKey other)
        {
            Node a = _n, b = other._n;
            if (!ReferenceEquals(a.Op, b.Op) || a.DType != b.DType || !Shapes.Equal(a.Shape, b.Shape)) return false;
            if (!Equals(a.Attrs, b.Attrs)) return false;
            var ia = a.InputArray; var ib = b.InputArray;
            if (ia.Length != ib.Length) return false;
            for (int i = 0; i < ia.Length; i++) if (!ReferenceEquals(ia[i], ib[i])) return false;
            return true;
        }

        public override bool Equals(object? obj) => obj is NodeKey k && Equals(k);
        public override int GetHashCode() => _hash;
    }
}
