// Recognition of ops written as primitives: softmax, log-softmax (also x − logsumexp(x)) and RMSNorm spelled out with max, exp,
// sum, mean, rsqrt, ... become the single-pass row kernels. The optimizer's CSE has already merged the
// repeated subexpressions (the exp of a softmax is one node), so the patterns are matched by identity.
using Kiln.Graph;
using static Kiln.Passes.PatternHelpers;

namespace Kiln.Passes;

internal sealed class SoftmaxRecognition : IRewritePass
{
    public string Name => "softmax";

    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        bool Computed(Node x) => PatternHelpers.Computed(x, isInput);
        // softmax: e / sum(e, axis, keep) with e = exp(x − max(x, axis, keep))
        if (Is(n, OpTable.Div) && Computed(n.InputArray[0]) && Computed(n.InputArray[1]))
        {
            Node e = n.InputArray[0], s = n.InputArray[1];
            if (Is(e, OpTable.Exp) && Is(s, OpTable.Sum) && ReferenceEquals(s.InputArray[0], e)
                && ShiftedByMax(e.InputArray[0], Computed, out var x, out int axis) && KeepAxis(s, axis))
                return new Node(OpTable.Softmax, [x], new IntAttrs(axis), n.Shape, n.DType, n.Device);
        }
        // log_softmax: d − log(sum(exp(d), axis, keep)) with d = x − max(x, axis, keep), or x − logsumexp(x, axis, keep)
        if (Is(n, OpTable.Sub) && Computed(n.InputArray[1]))
        {
            Node d = n.InputArray[0], l = n.InputArray[1];
            if (Is(l, OpTable.LogSumExp) && ReferenceEquals(l.InputArray[0], d) && Shapes.Equal(d.Shape, n.Shape)
                && l.Attrs is AxesAttrs { KeepDim: true, Axes: [var lax] })
                return new Node(OpTable.LogSoftmax, [d], new IntAttrs(lax), n.Shape, n.DType, n.Device);
            if (Is(l, OpTable.Log) && Computed(l.InputArray[0]) && Is(l.InputArray[0], OpTable.Sum))
            {
                var s = l.InputArray[0];
                if (Computed(s.InputArray[0]) && Is(s.InputArray[0], OpTable.Exp) && ReferenceEquals(s.InputArray[0].InputArray[0], d)
                    && ShiftedByMax(d, Computed, out var x, out int axis) && KeepAxis(s, axis))
                    return new Node(OpTable.LogSoftmax, [x], new IntAttrs(axis), n.Shape, n.DType, n.Device);
            }
        }
        return null;
    }

    /// <summary>d = x − max(x, [axis], keepDim: true), with x shaped like d.</summary>
    private static bool ShiftedByMax(Node d, Func<Node, bool> computed, out Node x, out int axis)
    {
        x = null!; axis = -1;
        if (!computed(d) || !Is(d, OpTable.Sub)) return false;
        Node a = d.InputArray[0], m = d.InputArray[1];
        if (!computed(m) || !Is(m, OpTable.Max) || !ReferenceEquals(m.InputArray[0], a) || !Shapes.Equal(a.Shape, d.Shape)) return false;
        if (m.Attrs is not AxesAttrs { KeepDim: true, Axes.Length: 1 } ax) return false;
        x = a; axis = ax.Axes[0];
        return true;
    }

    private static bool KeepAxis(Node reduction, int axis) => reduction.Attrs is AxesAttrs { KeepDim: true, Axes: [var a] } && a == axis;
}

internal sealed class RmsNormRecognition : IRewritePass
{
    public string Name => "rmsnorm";

    /// <summary>x · rsqrt(mean(x², -1, keep) + eps) · w (any order of the two products) → rms_norm(x, w, eps).</summary>
    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        bool Computed(Node x) => PatternHelpers.Computed(x, isInput);
        if (!Is(n, OpTable.Mul)) return null;
        foreach (var (inner, w) in Orders(n))
        {
            if (!Computed(inner) || !Is(inner, OpTable.Mul) || w.Shape.Length != 1) continue;
            foreach (var (x, r) in Orders(inner))
                if (Shapes.Equal(x.Shape, n.Shape) && x.Shape.Length > 0 && w.Shape[0] == x.Shape[^1] && w.DType == x.DType
                    && InverseRms(r, x, Computed, out double eps))
                    return new Node(OpTable.RmsNorm, [x, w], new NormAttrs(eps), n.Shape, n.DType, n.Device);
        }
        return null;
    }

    /// <summary>r = rsqrt(mean(x² or x·x, [last], keep) + eps) with eps a fill constant.</summary>
    internal static bool InverseRms(Node r, Node x, Func<Node, bool> computed, out double eps)
    {
        eps = 0;
        if (!computed(r) || !Is(r, OpTable.Rsqrt)) return false;
        var add = r.InputArray[0];
        if (!computed(add) || !Is(add, OpTable.Add)) return false;
        foreach (var (mean, c) in Orders(add))
        {
            if (c.Attrs is not FillAttrs f || !computed(mean) || !Is(mean, OpTable.Mean)) continue;
            if (mean.Attrs is not AxesAttrs { KeepDim: true, Axes: [var a] } || a != x.Shape.Length - 1) continue;
            var sq = mean.InputArray[0];
            if (!computed(sq)) continue;
            bool square = Is(sq, OpTable.Square) && ReferenceEquals(sq.InputArray[0], x)
                || Is(sq, OpTable.Mul) && ReferenceEquals(sq.InputArray[0], x) && ReferenceEquals(sq.InputArray[1], x);
            if (!square) continue;
            eps = f.Value;
            return true;
        }
        return false;
    }
}

internal sealed class LayerNormRecognition : IRewritePass
{
    public string Name => "layernorm";

    /// <summary>
    /// (x − mean(x)) · rsqrt(mean((x − mean(x))²) + eps) · w + b over the last axis (products and the sum in
    /// any order) → layer_norm(x, w, b, eps).
    /// </summary>
    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        bool Computed(Node x) => PatternHelpers.Computed(x, isInput);
        if (!Is(n, OpTable.Add)) return null;
        foreach (var (scaled, b) in Orders(n))
        {
            // The RMSNorm pass sees xc·rsqrt(mean(xc²)+eps)·w first (it is an RMSNorm of the centered x).
            if (Computed(scaled) && Is(scaled, OpTable.RmsNorm) && b.Shape.Length == 1 && Centered(scaled.InputArray[0], Computed, out var xr)
                && Shapes.Equal(xr.Shape, n.Shape) && b.Shape[0] == xr.Shape[^1] && b.DType == xr.DType)
                return new Node(OpTable.LayerNorm, [xr, scaled.InputArray[1], b], scaled.Attrs, n.Shape, n.DType, n.Device);
            if (!Computed(scaled) || !Is(scaled, OpTable.Mul) || b.Shape.Length != 1) continue;
            foreach (var (inner, w) in Orders(scaled))
            {
                if (!Computed(inner) || !Is(inner, OpTable.Mul) || w.Shape.Length != 1) continue;
                foreach (var (xc, r) in Orders(inner))
                    if (Centered(xc, Computed, out var x) && Shapes.Equal(x.Shape, n.Shape) && w.Shape[0] == x.Shape[^1]
                        && b.Shape[0] == x.Shape[^1] && w.DType == x.DType && b.DType == x.DType && RmsNormRecognition.InverseRms(r, xc, Computed, out double eps))   // 1/std(x) = 1/rms(x − mean)
                        return new Node(OpTable.LayerNorm, [x, w, b], new NormAttrs(eps), n.Shape, n.DType, n.Device);
            }
        }
        return null;
    }

    /// <summary>xc = x − mean(x, [last], keep).</summary>
    private static bool Centered(Node xc, Func<Node, bool> computed, out Node x)
    {
        x = null!;
        if (!computed(xc) || !Is(xc, OpTable.Sub)) return false;
        Node a = xc.InputArray[0], m = xc.InputArray[1];
        if (!computed(m) || !Is(m, OpTable.Mean) || !ReferenceEquals(m.InputArray[0], a) || a.Shape.Length == 0) return false;
        if (m.Attrs is not AxesAttrs { KeepDim: true, Axes: [var ax] } || ax != a.Shape.Length - 1) return false;
        x = a;
        return true;
    }
}
