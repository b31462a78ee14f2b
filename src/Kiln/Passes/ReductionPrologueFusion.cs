// Reduction prologue fusion: a fused elementwise group read only by a sum or mean becomes one `fused_reduce`
// node: the program runs block by block and each block is summed while it is in cache, so the group's full-size
// output is never written (e.g. (x·y).sum(), (a − b)².mean(), (g·x).sum([0, 1]) for a broadcast weight's gradient).
// Any axes: all of them, the last one (one sum per row), or any other set (rows accumulated into their output
// group by Cpu.GroupedSum, the plain reduction's own code for those layouts).
using Kiln.Graph;

namespace Kiln.Passes;

internal static class ReductionPrologueFusion
{
    public const string Name = "reduceprologue";

    private static bool IsLastAxisOnly(AxesAttrs ax, Node g) => ax.Axes.Length == 1 && ax.Axes[0] == g.Shape.Length - 1;

    /// <summary>Rows (the last axis) are the kernel's blocks: short enough to run one at a time, and not empty.</summary>
    private static bool RowsFit(Node g) => g.Shape.Length > 0 && g.Shape[^1] is > 0 and <= 16384;

    public static Node[] Apply(Node[] outputs, Func<Node, bool> isInput, out int rewrites) =>
        WholeGraphRewrite.Apply(outputs, isInput, (n, users, map) =>
            (ReferenceEquals(n.Op, OpTable.Sum) || ReferenceEquals(n.Op, OpTable.Mean)) && n.Attrs is AxesAttrs ax
            && n.InputArray[0] is { } g && ReferenceEquals(g.Op, OpTable.FusedElementwise) && !isInput(g)
            && users.GetValueOrDefault(g) == 1 && g.DType == n.DType
            && (ax.Axes.Length == g.Shape.Length || (RowsFit(g) && (IsLastAxisOnly(ax, g) || Cpu.GroupedSum.Applies(g.Shape.Length, ax.Axes))))
            && n.Device.Kind == DeviceKind.Cpu   // a CPU kernel (accelerator backends run the group and the reduction)
                ? new Node(OpTable.FusedReduce, g.InputArray.Select(map).ToArray(),
                    new FusedReduceAttrs((FusedProgram)g.Attrs!, ReferenceEquals(n.Op, OpTable.Mean), g.Shape, [.. ax.Axes.Order()]), n.Shape, n.DType, n.Device)
                : null, out rewrites);
}
