// Looking at a graph: its structural hash (ops, shapes, dtypes, attributes, topology; never data) and
// Graphviz output.
using System.Text;

namespace Kiln.Graph;

public static class GraphInfo
{
    /// <summary>
    /// Hash of the subgraph that computes <paramref name="outputs"/>: the plan cache's key (ops, attributes,
    /// shapes, dtypes, topology; realised nodes as input slots, fill constants by value), so two graphs built
    /// the same way hash equal however their node ids and data differ.
    /// </summary>
    public static long StructuralHash(params Node[] outputs) => Runtime.PlanKey.Build(outputs, optimize: true).Key.Hash64;

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
