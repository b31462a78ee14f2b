// The skeleton of the passes that run once on the settled graph (reduction prologues, producer epilogues): they
// need the final graph's consumer counts, which the per-node sweep cannot give. The graph is rebuilt bottom-up;
// each node is offered to the pass, and a node it declines is rebuilt only when one of its inputs was.
using Kiln.Graph;

namespace Kiln.Passes;

internal static class WholeGraphRewrite
{
    /// <param name="rewrite">(node, consumer counts per node — each input occurrence and each output counts —,
    /// the map from an original node to its rebuilt form) → a replacement, or null to keep the node.</param>
    public static Node[] Apply(Node[] outputs, Func<Node, bool> isInput,
        Func<Node, IReadOnlyDictionary<Node, int>, Func<Node, Node>, Node?> rewrite, out int rewrites)
    {
        var order = GraphWalk.Topological(outputs, isInput);
        var users = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        foreach (var n in order) foreach (var i in n.InputArray) users[i] = users.GetValueOrDefault(i) + 1;
        foreach (var o in outputs) users[o] = users.GetValueOrDefault(o) + 1;
        var map = new Dictionary<Node, Node>(ReferenceEqualityComparer.Instance);
        Node Map(Node n) => map.TryGetValue(n, out var m) ? m : n;
        rewrites = 0;
        foreach (var n in order)
        {
            var replacement = rewrite(n, users, Map);
            if (replacement is not null) rewrites++;
            else
            {
                var ins = n.InputArray.Select(Map).ToArray();
                if (!ins.SequenceEqual(n.InputArray, ReferenceEqualityComparer.Instance)) replacement = new Node(n.Op, ins, n.Attrs, n.Shape, n.DType, n.Device, null);
            }
            if (replacement is not null) map[n] = replacement;
        }
        return outputs.Select(Map).ToArray();
    }
}
