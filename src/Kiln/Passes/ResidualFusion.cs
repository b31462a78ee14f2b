// Residual fusion (a producer epilogue): x·W + r with r of the product's full shape — the residual connection
// of every transformer block — becomes one matmul_residual: the GEMM accumulates into a copy of r (beta = 1)
// instead of writing the product and adding it in a second pass. W must be 2-D (x's leading axes are rows);
// CPU graphs only; the product must have no other reader (the backward never reads it: d(x·W) needs x and W).
using Kiln.Graph;
using static Kiln.Passes.PatternHelpers;

namespace Kiln.Passes;

internal sealed class ResidualFusion : IRewritePass
{
    public string Name => "residual";

    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        if (!Is(n, OpTable.Add) || n.DType is not (DType.Float32 or DType.Float64) || n.Device.Kind != DeviceKind.Cpu) return null;
        foreach (var (p, r) in Orders(n))
        {
            if (!Computed(p, isInput) || !Is(p, OpTable.MatMul) || !SingleUse(p)) continue;
            Node x = p.InputArray[0], w = p.InputArray[1];
            if (w.Shape.Length != 2 || x.Shape.Length < 2 || !Shapes.Equal(r.Shape, n.Shape) || !Shapes.Equal(p.Shape, n.Shape)) continue;
            if (x.DType != n.DType || w.DType != n.DType || r.DType != n.DType) continue;
            return new Node(OpTable.MatMulResidual, [x, w, r], null, n.Shape, n.DType, n.Device);
        }
        return null;
    }
}
