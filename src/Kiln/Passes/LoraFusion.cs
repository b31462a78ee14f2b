// LoRA fusion: x·W + (h·A·B)·s — with the scale on the product, on A or on B, or absent, an optional bias added
// before or after, and the branch reading x itself or dropout of x (h = x·mask, possibly scaled: what LoraLinear
// writes in training) — becomes one lora_linear node whose kernel folds s into the GEMM alpha.
// W, A, B are 2-D (in,out), (in,r), (r,out); x and h are (..., in); fp32/fp64 (bf16/fp16 too on CUDA); s is a fill constant.
using Kiln.Graph;
using static Kiln.Passes.PatternHelpers;

namespace Kiln.Passes;

internal sealed class LoraFusion : IRewritePass
{
    public string Name => "lora";

    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        bool Computed(Node v) => PatternHelpers.Computed(v, isInput);
        if (!Is(n, OpTable.Add) || !FusableFloat(n)) return null;
        foreach (var (p, q) in Orders(n))
        {
            // (x·W + lora) + b with a bias b of shape (out,): the inner sum was fused first (inputs go first)
            if (Computed(p) && Is(p, OpTable.LoraLinear) && p.Attrs is LoraAttrs { HasBias: false } la && q.Shape.Length == 1
                && q.DType == n.DType && q.Shape[0] == n.Shape[^1] && Shapes.Equal(p.Shape, n.Shape))
                return new Node(OpTable.LoraLinear, [.. p.InputArray[..4], q, .. p.InputArray[4..]], la with { HasBias = true }, n.Shape, n.DType, n.Device);
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
        if (!Branch(q, x, computed, out var h, out var a, out var b, out double s)) return null;
        if (a.Shape.Length != 2 || b.Shape.Length != 2 || a.Shape[0] != w.Shape[0] || b.Shape[1] != w.Shape[1]) return null;
        if (a.DType != p.DType || b.DType != p.DType || w.DType != p.DType || h.DType != p.DType) return null;
        bool branch = !ReferenceEquals(h, x);
        return new Node(OpTable.LoraLinear, branch ? [x, w, a, b, h] : [x, w, a, b], new LoraAttrs(s, HasBias: false, HasBranch: branch), p.Shape, p.DType, p.Device);
    }

    /// <summary>(h·A)·B with h = x or dropout of x, scaled by a fill on the product, on A or on B.</summary>
    private static bool Branch(Node q, Node x, Func<Node, bool> computed, out Node h, out Node a, out Node b, out double s)
    {
        h = a = b = null!; s = 1;
        if (computed(q) && Is(q, OpTable.Mul))
            foreach (var (prod, c) in Orders(q))
                if (c.Attrs is FillAttrs f && c.Shape.Length == 0 && Branch(prod, x, computed, out h, out a, out b, out double inner))
                { s = inner * f.Value; return true; }
        if (!computed(q) || !SingleUse(q) || !Is(q, OpTable.MatMul)) return false;
        Node xa = q.InputArray[0];
        b = Scaled(q.InputArray[1], computed, ref s);
        if (!computed(xa) || !SingleUse(xa) || !Is(xa, OpTable.MatMul) || !ReadsX(xa.InputArray[0], x, computed, 3)) return false;
        h = xa.InputArray[0];
        a = Scaled(xa.InputArray[1], computed, ref s);
        return true;
    }

    /// <summary>
    /// h is x, or dropout of x: x times a mask (any tensor; LoraLinear's is a data leaf), possibly scaled or divided
    /// by a constant (inverted dropout written by hand), of x's shape. h stays an input of the fused op (not folded).
    /// </summary>
    private static bool ReadsX(Node h, Node x, Func<Node, bool> computed, int depth)
    {
        if (ReferenceEquals(h, x)) return true;
        if (depth == 0 || !computed(h) || !Shapes.Equal(h.Shape, x.Shape)) return false;
        if (Is(h, OpTable.Mul)) foreach (var (u, _) in Orders(h)) if (ReadsX(u, x, computed, depth - 1)) return true;
        if (Is(h, OpTable.Div) && h.InputArray[1].Attrs is FillAttrs) return ReadsX(h.InputArray[0], x, computed, depth - 1);
        return false;
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
