// The schedule of one Eval: the unrealised ancestry of the outputs in topological order, grouped into
// dependency levels (every node's inputs sit in earlier levels, so a level's nodes are independent).
using Kiln.Graph;

namespace Kiln.Runtime;

internal sealed class Schedule
{
    public required Node[] Nodes;          // topological order
    public required int[][] Inputs;        // index into Nodes, or -1 for an input of the graph
    public required int[] Consumers;       // edges from later nodes in this schedule
    public required int[][] Levels;

    public static Schedule Build(Node[] outputs, Func<Node, bool>? isInput = null)
    {
        var order = GraphWalk.Topological(outputs, isInput ?? (n => n.IsRealised));
        var index = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < order.Count; i++) index[order[i]] = i;
        int count = order.Count;
        var inputs = new int[count][];
        var consumers = new int[count];
        var level = new int[count];
        int maxLevel = 0;
        for (int i = 0; i < count; i++)
        {
            var ins = order[i].InputArray;
            inputs[i] = new int[ins.Length];
            for (int k = 0; k < ins.Length; k++)
            {
                int j = index.TryGetValue(ins[k], out int v) ? v : -1;
                inputs[i][k] = j;
                if (j >= 0) { consumers[j]++; level[i] = Math.Max(level[i], level[j] + 1); }
            }
            maxLevel = Math.Max(maxLevel, level[i]);
        }
        var levels = Enumerable.Range(0, count == 0 ? 0 : maxLevel + 1).Select(_ => new List<int>()).ToArray();
        for (int i = 0; i < count; i++) levels[level[i]].Add(i);
        return new Schedule { Nodes = [.. order], Inputs = inputs, Consumers = consumers, Levels = levels.Select(l => l.ToArray()).ToArray() };
    }
}
