// SwiGLU fusion: silu(x·Wg) ⊙ (x·Wu) — after the epilogue pass the gate is a matmul_epilogue with SiLU —
// becomes one swiglu op: the up projection is written to the output, the gate to a temporary, and one
// pass applies silu(gate)·up in place of three.
using Kiln.Graph;
using static Kiln.Passes.PatternHelpers;

namespace Kiln.Passes;

internal sealed class SwiGluFusion : IRewritePass
{
    public string Name => "swiglu";

    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        bool Computed(Node v) => PatternHelpers.Computed(v, isInput);
        if (!ReferenceEquals(n.Op, OpTable.Mul) || n.DType is not (DType.Float32 or DType.Float64)) return null;
        foreach (var (g, u) in Orders(n))
        {
            if (!Computed(g) || !Computed(u) || !SingleUse(g) || !SingleUse(u) || !ReferenceEquals(g.Op, OpTable.MatMulEpilogue) || !ReferenceEquals(u.Op, OpTable.MatMul)) continue;
            if (g.InputArray.Length != 2 || ((EpilogueAttrs)g.Attrs!).Activation != OpTable.Silu.Name) continue;
            Node x = g.InputArray[0];
            if (!ReferenceEquals(u.InputArray[0], x) || !Shapes.Equal(g.Shape, n.Shape) || !Shapes.Equal(u.Shape, n.Shape)) continue;
            return new Node(OpTable.SwiGlu, [x, g.InputArray[1], u.InputArray[1]], null, n.Shape, n.DType, n.Device);
        }
        return null;
    }
}
