// The schedule of one Eval: the unrealised ancestry of the outputs in topological order, grouped into
// dependency levels (every node's inputs sit in earlier levels, so a level's nodes are independent).
using Kiln.Graph;

namespace Kiln.Runtime;

internal sealed class Schedule
{
    public required Node[] Nodes;          // topological order
    public required Node[][] InputNodes;
    public required int[][] Inputs;        // index into Nodes, or -1 for an input that already has a value
    public required int[] Consumers;       // edges from later nodes in this schedule
    public required bool[] Keep;           // requested outputs: published into their nodes
    public required int[][] Levels;

    public static Schedule Build(Node[] outputs, Func<Node, bool>? isInput = null)
    {
        isInput ??= n => n.IsRealised;
        var index = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        var order = new List<Node>();
        var inputsOf = new List<Node[]>();
        var stack = new Stack<(Node Node, Node[] Inputs, int Next)>();
        foreach (var root in outputs)
        {
            if (isInput(root) || index.ContainsKey(root)) continue;
            stack.Push((root, root.InputArray, 0));
            index[root] = -1;   // on the stack
            while (stack.Count > 0)
            {
                var (n, ins, next) = stack.Pop();
                if (next < ins.Length)
                {
                    stack.Push((n, ins, next + 1));
                    var c = ins[next];
                    if (!isInput(c) && !index.ContainsKey(c)) { index[c] = -1; stack.Push((c, c.InputArray, 0)); }
                    continue;
                }
                index[n] = order.Count;
                order.Add(n);
                inputsOf.Add(ins);
            }
        }
        int count = order.Count;
        var inputs = new int[count][];
        var consumers = new int[count];
        var level = new int[count];
        int maxLevel = 0;
        for (int i = 0; i < count; i++)
        {
            var ins = inputsOf[i];
            inputs[i] = new int[ins.Length];
            for (int k = 0; k < ins.Length; k++)
            {
                int j = index.TryGetValue(ins[k], out int v) ? v : -1;
                inputs[i][k] = j;
                if (j >= 0) { consumers[j]++; level[i] = Math.Max(level[i], level[j] + 1); }
            }
            maxLevel = Math.Max(maxLevel, level[i]);
        }
        if (inputsOf.Count != count) throw new InvalidOperationException("internal: schedule mismatch");
        var keep = new bool[count];
        foreach (var o in outputs) if (index.TryGetValue(o, out int k) && k >= 0) keep[k] = true;
        var levels = Enumerable.Range(0, count == 0 ? 0 : maxLevel + 1).Select(l => new List<int>()).ToArray();
        for (int i = 0; i < count; i++) levels[level[i]].Add(i);
        return new Schedule
        {
            Nodes = [.. order], InputNodes = [.. inputsOf], Inputs = inputs, Consumers = consumers, Keep = keep,
            Levels = levels.Select(l => l.ToArray()).ToArray(),
        };
    }
}
