// Elementwise fusion: a connected group of elementwise float ops with one output shape becomes one
// `fused_elementwise` node holding the group as a small program. Runs after the rewrite sweeps, on the
// optimized graph, because it needs every node's consumer count: an inner member may feed only the group.
using Kiln.Cpu;
using Kiln.Graph;

namespace Kiln.Passes;

internal static class ElementwiseFusion
{
    public const string Name = "elementwise";

    public static bool Fusable(Node n) =>
        FusedKernel.Supports(n.Op) && PatternHelpers.FusableFloat(n) && n.InputArray.All(i => i.DType == n.DType);

    /// <summary>Rewrites <paramref name="outputs"/>' graph with fused groups; returns the number of groups made.</summary>
    public static Node[] Apply(Node[] outputs, Func<Node, bool> isInput, out int groups)
    {
        var order = GraphWalk.Topological(outputs, isInput);
        var position = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < order.Count; i++) position[order[i]] = i;
        var users = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        foreach (var n in order) foreach (var i in n.InputArray.Distinct<Node>(ReferenceEqualityComparer.Instance)) users[i] = users.GetValueOrDefault(i) + 1;
        foreach (var o in outputs) users[o] = users.GetValueOrDefault(o) + 1;   // an output is seen from outside

        // Roots first (reverse topological order): each fusable node not yet absorbed starts a group.
        var absorbed = new HashSet<Node>(ReferenceEqualityComparer.Instance);
        var replace = new Dictionary<Node, Node>(ReferenceEqualityComparer.Instance);
        groups = 0;
        for (int k = order.Count - 1; k >= 0; k--)
        {
            var root = order[k];
            if (absorbed.Contains(root) || !Fusable(root)) continue;
            var members = new List<Node>();
            Grow(root, members, users, isInput, absorbed);
            if (members.Count < 2) { absorbed.Remove(root); continue; }   // a lone op stays itself
            replace[root] = Build(root, members, position);
            groups++;
        }
        if (groups == 0) return outputs;
        // Rebuild: nodes whose inputs were replaced get new copies; replaced roots become their fused node.
        var map = new Dictionary<Node, Node>(ReferenceEqualityComparer.Instance);
        Node Map(Node n) => map.TryGetValue(n, out var m) ? m : n;
        foreach (var n in order)
        {
            if (replace.TryGetValue(n, out var fused))
            {
                var ins = fused.InputArray.Select(Map).ToArray();
                map[n] = new Node(fused.Op, ins, fused.Attrs, fused.Shape, fused.DType, fused.Device);
                continue;
            }
            if (absorbed.Contains(n)) continue;
            var orig = n.InputArray;
            var mapped = orig.Select(Map).ToArray();
            map[n] = mapped.SequenceEqual(orig, ReferenceEqualityComparer.Instance) ? n : new Node(n.Op, mapped, n.Attrs, n.Shape, n.DType, n.Device);
        }
        return outputs.Select(Map).ToArray();
    }

    /// <summary>Adds <paramref name="root"/> and, through inputs, every fusable node used only inside the group.</summary>
    private static void Grow(Node root, List<Node> members, Dictionary<Node, int> users, Func<Node, bool> isInput, HashSet<Node> absorbed)
    {
        var stack = new Stack<Node>();
        stack.Push(root);
        absorbed.Add(root);
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            members.Add(n);
            foreach (var i in n.InputArray)
                if (!isInput(i) && !absorbed.Contains(i) && Fusable(i) && users.GetValueOrDefault(i) == 1 && Shapes.Equal(i.Shape, root.Shape))
                {
                    absorbed.Add(i);
                    stack.Push(i);
                }
        }
    }

    /// <summary>The fused node: external inputs in first-use order, the members as a program in dependency order.</summary>
    private static Node Build(Node root, List<Node> members, Dictionary<Node, int> position)
    {
        var temp = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        var inputs = new List<Node>();
        var program = new List<FusedInstruction>();
        int Operand(Node i)
        {
            if (temp.TryGetValue(i, out int t)) return t;
            int at = inputs.FindIndex(x => ReferenceEquals(x, i));
            if (at < 0) { at = inputs.Count; inputs.Add(i); }
            return ~at;
        }
        foreach (var n in members.OrderBy(m => position[m]))   // topological: inputs before users
        {
            var ins = n.InputArray;
            program.Add(new FusedInstruction(n.Op, Operand(ins[0]), ins.Length > 1 ? Operand(ins[1]) : 0));
            temp[n] = program.Count - 1;
        }
        return new Node(OpTable.FusedElementwise, [.. inputs], new FusedProgram([.. program]), root.Shape, root.DType, root.Device);
    }
}
