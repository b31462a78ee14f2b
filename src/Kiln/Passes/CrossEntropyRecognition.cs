// Cross-entropy written as primitives → the fused cross_entropy op (one row pass, no probability tensor).
// Recognised per-row losses (logits x of shape (..., C), the last axis the classes):
//   −pick(log_softmax(x))          (F.nll_loss(F.log_softmax(x), t))
//   logsumexp(x) − pick(x)
// where pick(z) is gather(z, last, idx) (idx shaped (..., 1), reshapes around it allowed) or the one-hot
// product sum(scatter_add(zeros, last, idx, ones) · z, last). The loss is their mean (mean(), or sum()/N),
// or, masked, sum(loss · m) / sum(m) (or where(mask, loss, 0)) with m = cast(t != ignore) and idx = t or
// where(t != ignore, t, k). Signs may sit anywhere (neg, ·(−1)).
using Kiln.Graph;
using static Kiln.Passes.PatternHelpers;

namespace Kiln.Passes;

internal sealed class CrossEntropyRecognition : IRewritePass
{
    public string Name => "crossentropy";

    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        if (n.Shape.Length != 0 || !n.DType.IsFloat()) return null;
        bool C(Node x) => Computed(x, isInput);
        var core = Peel(n, C, out int sign);
        if (!C(core)) return null;
        if (Is(core, OpTable.Mean) && AllAxes(core))
            return Build(n, core.InputArray[0], sign, null, C);
        if (!Is(core, OpTable.Div)) return null;
        var sum = Peel(core.InputArray[0], C, out int s2);
        Node den = core.InputArray[1];
        if (!C(sum) || !Is(sum, OpTable.Sum) || !AllAxes(sum)) return null;
        var body = sum.InputArray[0];
        if (den.Attrs is FillAttrs f && den.InputArray.Length == 0 && f.Value == Shapes.Numel(body.Shape))
            return Build(n, body, sign * s2, null, C);
        // Masked: sum(rows · cast(mask)) / count, or sum(where(mask, rows, 0)) / count.
        var masked = Peel(body, C, out int s3);
        if (!C(masked) || !Shapes.Equal(masked.Shape, body.Shape)) return null;
        if (Is(masked, OpTable.Mul))
            foreach (var (rows, m) in Orders(masked))
                if (C(m) && Is(m, OpTable.Cast) && Is(m.InputArray[0], OpTable.Ne) && Shapes.Equal(m.Shape, rows.Shape)
                    && Count(den, m.InputArray[0], C) && Build(n, rows, sign * s2 * s3, m.InputArray[0], C) is { } r)
                    return r;
        if (Is(masked, OpTable.Where) && masked.InputArray[2].Attrs is FillAttrs { Value: 0 } && Is(masked.InputArray[0], OpTable.Ne)
            && Shapes.Equal(masked.InputArray[1].Shape, masked.Shape) && Count(den, masked.InputArray[0], C))
            return Build(n, masked.InputArray[1], sign * s2 * s3, masked.InputArray[0], C);
        return null;
    }

    /// <summary>cross_entropy for per-row losses <paramref name="rows"/> (sign applied), or null.</summary>
    private static Node? Build(Node n, Node rows, int sign, Node? mask, Func<Node, bool> C)
    {
        var r = Peel(rows, C, out int s);
        sign *= s;
        Node x, idx;
        if (sign < 0 && Pick(r, C, out var z, out idx) && C(z) && Is(z, OpTable.LogSoftmax) && ((IntAttrs)z.Attrs!).Value == z.Shape.Length - 1)
            x = z.InputArray[0];
        else if (sign > 0 && C(r) && Is(r, OpTable.Sub) && C(r.InputArray[0]) && Is(r.InputArray[0], OpTable.LogSumExp)
            && Shapes.Equal(r.InputArray[0].Shape, r.InputArray[1].Shape) && Pick(r.InputArray[1], C, out x, out idx)
            && ReferenceEquals(r.InputArray[0].InputArray[0], x) && r.InputArray[0].Attrs is AxesAttrs { Axes: [var a] } && a == x.Shape.Length - 1)
        { }
        else return null;
        int classes = x.Shape[^1];
        long count = Shapes.Numel(x.Shape) / Math.Max(classes, 1);
        if (x.DType != n.DType || Shapes.Numel(rows.Shape) != count || classes == 0) return null;
        Node target = idx;
        int ignore = int.MinValue;   // no mask: no row is skipped (an out-of-range target still throws, as gather does)
        if (mask is not null && !Targets(idx, mask, classes, C, out target, out ignore)) return null;
        if (mask is not null && Shapes.Numel(mask.Shape) != count) return null;
        var logits = x.Shape.Length == 2 ? x : Reshape(x, [(int)count, classes]);
        var t = target.Shape.Length == 1 ? target : Reshape(target, [(int)count]);
        return new Node(OpTable.CrossEntropy, [logits, t], new CrossEntropyAttrs(ignore, 0), [], n.DType, n.Device);
    }

    /// <summary>z's entries at idx along the last axis: gather, or the one-hot product summed; reshapes around it allowed.</summary>
    private static bool Pick(Node p, Func<Node, bool> C, out Node z, out Node idx)
    {
        z = idx = null!;
        while (C(p) && Is(p, OpTable.Reshape)) p = p.InputArray[0];
        if (!C(p)) return false;
        if (Is(p, OpTable.Gather) && ((IntAttrs)p.Attrs!).Value == p.Shape.Length - 1)
            (z, idx) = (p.InputArray[0], p.InputArray[1]);
        else if (Is(p, OpTable.Sum) && p.Attrs is AxesAttrs { Axes: [var a] } && C(p.InputArray[0]) && Is(p.InputArray[0], OpTable.Mul))
        {
            var prod = p.InputArray[0];
            if (a != prod.Shape.Length - 1) return false;
            foreach (var (oh, v) in Orders(prod))
                if (C(oh) && Is(oh, OpTable.ScatterAdd) && ((IntAttrs)oh.Attrs!).Value == a && oh.InputArray[0].Attrs is FillAttrs { Value: 0 }
                    && oh.InputArray[2].Attrs is FillAttrs { Value: 1 } && Shapes.Equal(oh.Shape, prod.Shape) && Shapes.Equal(v.Shape, prod.Shape))
                { (z, idx) = (v, oh.InputArray[1]); break; }
            if (z is null) return false;
        }
        else return false;
        return z.Shape.Length >= 2 && Shapes.Equal(idx.Shape, [.. z.Shape[..^1], 1]);
    }

    /// <summary>mask = t != ignore (an integer fill); idx is t, or where(mask, t, k) with k a class, up to reshapes.</summary>
    private static bool Targets(Node idx, Node mask, int classes, Func<Node, bool> C, out Node t, out int ignore)
    {
        t = null!; ignore = 0;
        if (!C(mask) || mask.InputArray[1].Attrs is not FillAttrs { Value: var ig } || ig != Math.Truncate(ig) || ig is < int.MinValue or > int.MaxValue) return false;
        t = mask.InputArray[0];
        ignore = (int)ig;
        while (C(idx) && Is(idx, OpTable.Reshape)) idx = idx.InputArray[0];
        if (ReferenceEquals(idx, t)) return true;
        return C(idx) && Is(idx, OpTable.Where) && ReferenceEquals(idx.InputArray[0], mask) && ReferenceEquals(idx.InputArray[1], t)
            && idx.InputArray[2].Attrs is FillAttrs { Value: var k } && k >= 0 && k < classes;
    }

    /// <summary>den = [cast] sum(cast(mask), every axis): the number of counted rows.</summary>
    private static bool Count(Node den, Node mask, Func<Node, bool> C)
    {
        if (C(den) && Is(den, OpTable.Cast)) den = den.InputArray[0];
        return C(den) && Is(den, OpTable.Sum) && AllAxes(den) && C(den.InputArray[0]) && Is(den.InputArray[0], OpTable.Cast)
            && ReferenceEquals(den.InputArray[0].InputArray[0], mask);
    }

    /// <summary>Strips negations (neg, ·(−1)); <paramref name="sign"/> is ±1.</summary>
    private static Node Peel(Node n, Func<Node, bool> C, out int sign)
    {
        sign = 1;
        while (C(n))
        {
            if (Is(n, OpTable.Neg)) { n = n.InputArray[0]; sign = -sign; continue; }
            if (!Is(n, OpTable.Mul)) break;
            Node? next = null;
            foreach (var (v, c) in Orders(n))
                if (c.Attrs is FillAttrs { Value: -1 } && c.InputArray.Length == 0 && Shapes.Equal(v.Shape, n.Shape)) { next = v; break; }
            if (next is null) break;
            n = next; sign = -sign;
        }
        return n;
    }

    private static bool AllAxes(Node r) => r.Attrs is AxesAttrs { KeepDim: false } ax && ax.Axes.Length == r.InputArray[0].Shape.Length;

    private static Node Reshape(Node x, int[] shape) => new(OpTable.Reshape, [x], new ShapeAttrs(shape), shape, x.DType, x.Device);
}
