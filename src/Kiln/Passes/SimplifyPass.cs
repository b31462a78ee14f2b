// Algebraic simplification: identities that remove work — x·1, x/1, x+0, x−0, −(−x), permute chains,
// reshape chains, expand to the same shape, exact cast round trips. All are exact except that x+0 → x keeps
// a −0 that IEEE addition would have turned into +0 (as XLA and tinygrad also do).
using Kiln.Graph;

namespace Kiln.Passes;

internal sealed class SimplifyPass : IRewritePass
{
    public string Name => "simplify";

    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        bool Computed(Node x) => PatternHelpers.Computed(x, isInput);
        var ins = n.InputArray;
        if (ReferenceEquals(n.Op, OpTable.Mul)) return KeepIfIdentity(n, ins[0], ins[1], 1) ?? KeepIfIdentity(n, ins[1], ins[0], 1);
        if (ReferenceEquals(n.Op, OpTable.Add)) return KeepIfIdentity(n, ins[0], ins[1], 0) ?? KeepIfIdentity(n, ins[1], ins[0], 0);
        if (ReferenceEquals(n.Op, OpTable.Sub)) return KeepIfIdentity(n, ins[0], ins[1], 0);
        if (ReferenceEquals(n.Op, OpTable.Div)) return KeepIfIdentity(n, ins[0], ins[1], 1);
        if (ReferenceEquals(n.Op, OpTable.Neg) && ReferenceEquals(ins[0].Op, OpTable.Neg) && Computed(ins[0])) return ins[0].InputArray[0];
        if (ReferenceEquals(n.Op, OpTable.Permute)) return Permute(n, ins[0], Computed);
        if (ReferenceEquals(n.Op, OpTable.Reshape)) return Reshape(n, ins[0], Computed);
        if (ReferenceEquals(n.Op, OpTable.Expand_) && Shapes.Equal(ins[0].Shape, n.Shape)) return ins[0];
        if (ReferenceEquals(n.Op, OpTable.Cast)) return Cast(n, ins[0], Computed);
        return null;
    }

    /// <summary>x when <paramref name="other"/> is a fill of <paramref name="identity"/> that changes neither shape nor dtype.</summary>
    private static Node? KeepIfIdentity(Node n, Node x, Node other, double identity) =>
        other.Attrs is FillAttrs f && f.Value == identity && Shapes.Equal(x.Shape, n.Shape) && x.DType == n.DType ? x : null;

    private static Node? Permute(Node n, Node x, Func<Node, bool> Computed)
    {
        var perm = ((ShapeAttrs)n.Attrs!).Shape;
        if (perm.Select((p, i) => p == i).All(b => b)) return x;
        if (!ReferenceEquals(x.Op, OpTable.Permute) || !Computed(x)) return null;
        // permute(permute(y, p1), p2)[i] = y axis p1[p2[i]]
        var inner = ((ShapeAttrs)x.Attrs!).Shape;
        var composed = perm.Select(p => inner[p]).ToArray();
        var y = x.InputArray[0];
        if (composed.Select((p, i) => p == i).All(b => b)) return y;
        return new Node(OpTable.Permute, [y], new ShapeAttrs(composed), n.Shape, n.DType, n.Device);
    }

    private static Node? Reshape(Node n, Node x, Func<Node, bool> Computed)
    {
        if (Shapes.Equal(x.Shape, n.Shape)) return x;
        if (!ReferenceEquals(x.Op, OpTable.Reshape) || !Computed(x)) return null;
        var y = x.InputArray[0];
        return Shapes.Equal(y.Shape, n.Shape) ? y : new Node(OpTable.Reshape, [y], n.Attrs, n.Shape, n.DType, n.Device);
    }

    private static Node? Cast(Node n, Node x, Func<Node, bool> Computed)
    {
        if (x.DType == n.DType) return x;
        if (!ReferenceEquals(x.Op, OpTable.Cast) || !Computed(x)) return null;
        var y = x.InputArray[0];
        // cast(cast(y, mid), y.dtype) is y exactly when mid holds every value of y's dtype.
        return y.DType == n.DType && Holds(x.DType, y.DType) ? y : null;
    }

    private static bool Holds(DType wide, DType narrow) => (wide, narrow) switch
    {
        (DType.Float64, DType.Float32 or DType.BFloat16 or DType.Float16 or DType.Int32) => true,
        (DType.Float32, DType.BFloat16 or DType.Float16) => true,
        (DType.Int64, DType.Int32 or DType.Bool) => true,
        (DType.Int32, DType.Bool) => true,
        _ => false,
    };
}
