// The one topological walk the engine uses: every node the outputs reach without passing an input,
// inputs before their users. Explicit stack, so graph depth is not limited by the thread's stack.
namespace Kiln.Graph;

internal static class GraphWalk
{
    /// <param name="isInput">Nodes where the walk stops (not included): realised nodes, plan slots, or none.</param>
    public static List<Node> Topological(Node[] outputs, Func<Node, bool> isInput)
    {
        var order = new List<Node>();
        var seen = new HashSet<Node>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Node, int)>();
        foreach (var o in outputs)
        {
            if (isInput(o) || !seen.Add(o)) continue;
            stack.Push((o, 0));
            while (stack.Count > 0)
            {
                var (n, next) = stack.Pop();
                var ins = n.InputArray;
                if (next < ins.Length)
                {
                    stack.Push((n, next + 1));
                    if (!isInput(ins[next]) && seen.Add(ins[next])) stack.Push((ins[next], 0));
                    continue;
                }
                order.Add(n);
            }
        }
        return order;
    }
}
