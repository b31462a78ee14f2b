// Matmul epilogue fusion: act(x·W + b), x·W + b and act(x·W) (act ∈ ReLU, GELU (both forms), SiLU) become one
// matmul_epilogue op: the bias and activation are applied to each output row right after the GEMM wrote it,
// instead of two more passes over the whole output.
using Kiln.Graph;
using static Kiln.Passes.PatternHelpers;

namespace Kiln.Passes;

internal sealed class EpilogueFusion : IRewritePass
{
    public string Name => "epilogue";

    internal static readonly OpDef[] Activations = [OpTable.Relu, OpTable.GeluTanh, OpTable.GeluErf, OpTable.Silu];

    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        bool Computed(Node v) => PatternHelpers.Computed(v, isInput);
        if (!FusableFloat(n)) return null;
        // act(epilogue without activation | matmul)
        int act = Array.IndexOf(Activations, n.Op);
        if (act >= 0)
        {
            var p = n.InputArray[0];
            if (!Computed(p) || !SingleUse(p)) return null;
            if (ReferenceEquals(p.Op, OpTable.MatMul))
                return Make(p.InputArray, null, n.Op.Name, n);
            if (ReferenceEquals(p.Op, OpTable.MatMulEpilogue) && ((EpilogueAttrs)p.Attrs!).Activation is null)
                return new Node(OpTable.MatMulEpilogue, p.InputArray, new EpilogueAttrs(n.Op.Name), n.Shape, n.DType, n.Device);
            return null;
        }
        // matmul + bias (either order), bias of shape (out,)
        if (!ReferenceEquals(n.Op, OpTable.Add)) return null;
        foreach (var (m, b) in Orders(n))
            if (Computed(m) && SingleUse(m) && ReferenceEquals(m.Op, OpTable.MatMul) && b.Shape.Length == 1 && b.DType == n.DType
                && b.Shape[0] == n.Shape[^1] && Shapes.Equal(m.Shape, n.Shape))
                return Make(m.InputArray, b, null, n);
        return null;
    }

    private static Node Make(Node[] mm, Node? bias, string? act, Node n) =>
        new(OpTable.MatMulEpilogue, bias is null ? mm : [.. mm, bias], new EpilogueAttrs(act), n.Shape, n.DType, n.Device);
}
