// LoRA fusion: x·W + (x·A·B)·s — with the scale on the product, on A or on B, or absent, and an optional
// bias added before or after — becomes one lora_linear node whose kernel folds s into the GEMM alpha.
// W, A, B are 2-D (in,out), (in,r), (r,out); x is (..., in); fp32/fp64; s is a fill constant.
using Kiln.Graph;
using static Kiln.Passes.PatternHelpers;

namespace Kiln.Passes;

internal sealed class LoraFusion : IRewritePass
{
    public string Name => "lora";

    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        bool Computed(Node v) => PatternHelpers.Computed(v, isInput);
        if (!Is(n, OpTable.Add) || n.DType is not (DType.Float32 or DType.Float64)) return null;
        foreach (var (p, q) in Orders(n))
        {
            // (x·W + lora) + b with a bias b of shape (out,): the inner sum was fused first (inputs go first)
            if (Computed(p) && Is(p, OpTable.LoraLinear) && p.InputArray.Length == 4 && q.Shape.Length == 1
                && q.DType == n.DType && q.Shape[0] == n.Shape[^1] && Shapes.Equal(p.Shape, n.Shape))
                return new Node(OpTable.LoraLinear, [.. p.InputArray, q], p.Attrs, n.Shape, n.DType, n.Device);
            if (Match(p, q, Computed) is { } fused) return fused;
        }
        return null;
    }

    /// <summary>p = x·W, q = the LoRA branch of the same x.</summary>
    private static Node? Match(Node p, Node q, Func<Node, bool> computed)
    {
        if (!computed(p) || !SingleUse(p) || !Is(p, OpTable.MatMul)) return null;
        Node x = p.InputArray[0], w = p.InputArray[1];
        if (w.Shape.Length != 2 || x.Shape.Length < 2) return null;
        if (!Branch(q, x, computed, out var a, out var b, out double s)) return null;
        if (a.Shape.Length != 2 || b.Shape.Length != 2 || a.Shape[0] != w.Shape[0] || b.Shape[1] != w.Shape[1]) return null;
        if (a.DType != p.DType || b.DType != p.DType || w.DType != p.DType) return null;
        return new Node(OpTable.LoraLinear, [x, w, a, b], new ScalarAttrs(s), p.Shape, p.DType, p.Device);
    }

    /// <summary>(x·A)·B, scaled by a fill on the product, on A or on B.</summary>
    private static bool Branch(Node q, Node x, Func<Node, bool> computed, out Node a, out Node b, out double s)
    {
        a = b = null!; s = 1;
        if (computed(q) && Is(q, OpTable.Mul))
            foreach (var (prod, c) in Orders(q))
                if (c.Attrs is FillAttrs f && c.Shape.Length == 0 && Branch(prod, x, computed, out a, out b, out double inner))
                { s = inner * f.Value; return true; }
        if (!computed(q) || !SingleUse(q) || !Is(q, OpTable.MatMul)) return false;
        Node xa = q.InputArray[0];
        b = Scaled(q.InputArray[1], computed, ref s);
        if (!computed(xa) || !SingleUse(xa) || !Is(xa, OpTable.MatMul) || !ReferenceEquals(xa.InputArray[0], x)) return false;
        a = Scaled(xa.InputArray[1], computed, ref s);
        return true;
    }

    /// <summary>M·c (c a scalar fill) gives M and multiplies s by c; anything else is itself.</summary>
    private static Node Scaled(Node m, Func<Node, bool> computed, ref double s)
    {
        if (computed(m) && Is(m, OpTable.Mul))
            foreach (var (v, c) in Orders(m))
                if (c.Attrs is FillAttrs f && c.Shape.Length == 0 && Shapes.Equal(v.Shape, m.Shape)) { s *= f.Value; return v; }
        return m;
    }

}
