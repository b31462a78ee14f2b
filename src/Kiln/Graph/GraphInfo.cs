// Looking at a graph: its structural hash (ops, shapes, dtypes, attributes, topology; never data) and
// Graphviz output.
using System.Text;

namespace Kiln.Graph;

public static class GraphInfo
{
    /// <summary>
    /// Hash of the subgraph that computes <paramref name="outputs"/>. Nodes are numbered by first visit, so two
    /// graphs built the same way hash equal however their node ids differ. Realised nodes count as input slots
    /// (shape and dtype only): a plan keyed by this hash is reusable with new data.
    /// </summary>
    public static long StructuralHash(params Node[] outputs)
    {
        var number = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        var h = new HashCode();
        foreach (var o in outputs) h.Add(Visit(o, number, ref h));
        return (long)h.ToHashCode() << 32 ^ (uint)number.Count;
    }

    private static int Visit(Node n, Dictionary<Node, int> number, ref HashCode h)
    {
        if (number.TryGetValue(n, out int k)) return k;
        var ins = n.InputArray;
        var ids = new int[ins.Length];
        for (int i = 0; i < ins.Length; i++) ids[i] = Visit(ins[i], number, ref h);
        h.Add(n.IsRealised || ins.Length == 0 ? "slot" : n.Op.Name);
        foreach (int d in n.Shape) h.Add(d);
        h.Add(n.Shape.Length);
        h.Add(n.DType);
        if ((!n.IsRealised && ins.Length > 0) || n.Attrs is FillAttrs) n.Attrs?.AddTo(ref h);
        foreach (int id in ids) h.Add(id);
        int me = number.Count;
        number[n] = me;
        return me;
    }

    /// <summary>Graphviz (dot) text of the subgraph computing <paramref name="outputs"/>.</summary>
    public static string ToDot(params Node[] outputs)
    {
        var sb = new StringBuilder("digraph kiln {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n");
        var seen = new HashSet<Node>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<Node>(outputs);
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            if (!seen.Add(n)) continue;
            string label = $"{n.Op.Name}{(n.Attrs is null ? "" : "\\n" + n.Attrs.ToString()!.Replace("\"", "'"))}\\n{Shapes.Format(n.Shape)} {n.DType.ShortName()}";
            string style = n.IsRealised ? ", style=filled, fillcolor=lightgrey" : "";
            sb.Append($"  n{n.Id} [label=\"{label}\"{style}];\n");
            foreach (var i in n.InputArray) { sb.Append($"  n{i.Id} -> n{n.Id};\n"); stack.Push(i); }
        }
        return sb.Append("}\n").ToString();
    }
}
