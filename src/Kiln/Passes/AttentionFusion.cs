// Attention written as primitives — softmax(q·kᵀ·s [causal mask]) · v, the scale on the scores, a division, or
// on q, and the mask as the bottom-right causal triangle — becomes one `attention` node: one kernel that
// never stores the (T, S) scores. kᵀ given as a transposed view is unwrapped; any other kᵀ is viewed back.
using Kiln.Graph;
using static Kiln.Passes.PatternHelpers;

namespace Kiln.Passes;

internal sealed class AttentionFusion : IRewritePass
{
    public string Name => "attention";

    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        bool Computed(Node v) => PatternHelpers.Computed(v, isInput);
        if (!Is(n, OpTable.MatMul) || !FusableFloat(n)) return null;
        Node p = n.InputArray[0], v = n.InputArray[1];
        if (!Computed(p) || !SingleUse(p) || !Is(p, OpTable.Softmax) || ((IntAttrs)p.Attrs!).Value != p.Shape.Length - 1) return null;
        Node x = p.InputArray[0];
        bool causal = false;
        if (Computed(x) && Is(x, OpTable.Triangle) && x.Attrs is TriangleAttrs { Lower: true, Fill: double.NegativeInfinity } t)
        {
            if (t.Diagonal != x.Shape[^1] - x.Shape[^2]) return null;   // only the bottom-right aligned causal mask
            causal = true;
            x = x.InputArray[0];
        }
        if (!Scores(x, Computed, out var q, out var kt, out double scale)) return null;
        if (q.Shape.Length < 2 || kt.Shape.Length < 2 || v.Shape.Length < 2 || q.DType != n.DType || kt.DType != n.DType || v.DType != n.DType) return null;
        var k = Computed(kt) && Is(kt, OpTable.Permute) && SwapsLastTwo((ShapeAttrs)kt.Attrs!) ? kt.InputArray[0] : Transposed(kt);
        var attrs = new AttentionAttrs(scale, causal);
        try
        {
            var (shape, dtype) = OpTable.Attention.Infer([q, k, v], attrs);
            if (!Shapes.Equal(shape, n.Shape) || dtype != n.DType) return null;   // e.g. batch broadcasting the matmuls did differently
        }
        catch (ArgumentException) { return null; }
        return new Node(OpTable.Attention, [q, k, v], attrs, n.Shape, n.DType, n.Device);
    }

    /// <summary>q·kᵀ, times or divided by a scalar fill, or with q scaled first.</summary>
    private static bool Scores(Node x, Func<Node, bool> computed, out Node q, out Node kt, out double scale)
    {
        q = kt = null!; scale = 1;
        if (computed(x) && (Is(x, OpTable.Mul) || Is(x, OpTable.Div)))
        {
            foreach (var (m, c) in Is(x, OpTable.Mul) ? Orders(x) : [(x.InputArray[0], x.InputArray[1])])
                if (c.Attrs is FillAttrs f && c.Shape.Length == 0 && computed(m) && Is(m, OpTable.MatMul))
                {
                    scale = Is(x, OpTable.Mul) ? f.Value : 1 / f.Value;
                    x = m;
                    break;
                }
        }
        if (!computed(x) || !Is(x, OpTable.MatMul)) return false;
        q = x.InputArray[0]; kt = x.InputArray[1];
        if (computed(q) && Is(q, OpTable.Mul))
            foreach (var (m, c) in Orders(q))
                if (c.Attrs is FillAttrs f && c.Shape.Length == 0 && Shapes.Equal(m.Shape, q.Shape)) { scale *= f.Value; q = m; break; }
        return true;
    }

    private static bool SwapsLastTwo(ShapeAttrs a)
    {
        int r = a.Shape.Length;
        for (int i = 0; i < r - 2; i++) if (a.Shape[i] != i) return false;
        return a.Shape[r - 2] == r - 1 && a.Shape[r - 1] == r - 2;
    }

    private static Node Transposed(Node kt)
    {
        int r = kt.Shape.Length;
        var perm = Enumerable.Range(0, r).ToArray();
        (perm[r - 2], perm[r - 1]) = (perm[r - 1], perm[r - 2]);
        int[] shape = [.. kt.Shape];
        (shape[r - 2], shape[r - 1]) = (shape[r - 1], shape[r - 2]);
        return new Node(OpTable.Permute, [kt], new ShapeAttrs(perm), shape, kt.DType, kt.Device);
    }
}
