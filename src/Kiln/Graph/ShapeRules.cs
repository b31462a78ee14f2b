// Shape and dtype rules shared by rows of the op table. Every failure names the op, the shapes and the
// argument at fault, because that message is what a user sees for a bad call.
namespace Kiln.Graph;

internal static class ShapeRules
{
    public static ArgumentException Error(string op, string message, params Node[] inputs) =>
        new($"{op}: {message} (inputs: {string.Join(", ", inputs.Select(n => Shapes.Format(n.Shape) + " " + n.DType.ShortName()))})");

    public static void RequireFloat(string op, Node x, string arg = "x")
    {
        if (!x.DType.IsFloat()) throw Error(op, $"argument '{arg}' must be a floating-point tensor, got {x.DType.ShortName()}", x);
    }

    public static void RequireInteger(string op, Node x, string arg)
    {
        if (!x.DType.IsInteger()) throw Error(op, $"argument '{arg}' must be an int32 or int64 tensor of indices, got {x.DType.ShortName()}", x);
    }

    public static void RequireSameDType(string op, Node a, Node b)
    {
        if (a.DType != b.DType) throw Error(op, $"dtypes differ ({a.DType.ShortName()} and {b.DType.ShortName()}); cast one first", a, b);
    }

    public static (int[], DType) UnaryFloat(string op, Node[] i)
    {
        RequireFloat(op, i[0]);
        return (i[0].Shape, i[0].DType);
    }

    public static int[] Broadcast(string op, Node a, Node b) =>
        Shapes.TryBroadcast(a.Shape, b.Shape) ?? throw Error(op, $"shapes {Shapes.Format(a.Shape)} and {Shapes.Format(b.Shape)} cannot be broadcast together", a, b);

    public static (int[], DType) Binary(string op, Node[] i, bool floatOnly = false)
    {
        RequireSameDType(op, i[0], i[1]);
        if (i[0].DType == DType.Bool) throw Error(op, "arithmetic on bool tensors is not supported; cast to a number type first", i);
        if (floatOnly) RequireFloat(op, i[0], "a");
        return (Broadcast(op, i[0], i[1]), i[0].DType);
    }

    public static (int[], DType) Comparison(string op, Node[] i)
    {
        RequireSameDType(op, i[0], i[1]);
        if (i[0].DType == DType.Bool) throw Error(op, "comparing bool tensors is not supported; cast to int32 first", i);
        return (Broadcast(op, i[0], i[1]), DType.Bool);
    }

    public static int[] Reduced(int[] shape, int[] axes, bool keepDim)
    {
        var r = new List<int>();
        for (int d = 0; d < shape.Length; d++)
        {
            if (!axes.Contains(d)) r.Add(shape[d]);
            else if (keepDim) r.Add(1);
        }
        return r.ToArray();
    }

    public static (int[], DType) Reduction(string op, Node[] i, IOpAttrs? attrs, bool floatOnly = true, bool needsElements = false)
    {
        var (axes, keep) = attrs switch { AxesAttrs a => (a.Axes, a.KeepDim), VarAttrs v => (v.Axes, v.KeepDim), _ => throw new InvalidOperationException() };
        if (floatOnly) RequireFloat(op, i[0]);
        else if (i[0].DType == DType.Bool) throw Error(op, "reductions of bool tensors are not supported; cast to int32 or int64 first", i);
        foreach (int a in axes)
            if (a < 0 || a >= i[0].Shape.Length) throw Error(op, $"axis {a} is out of range for rank {i[0].Shape.Length}", i);
            else if (needsElements && i[0].Shape[a] == 0) throw Error(op, $"cannot reduce over axis {a} of size 0 (there is no maximum/minimum of nothing)", i);
        return (Reduced(i[0].Shape, axes, keep), i[0].DType);
    }

    public static (int[], DType) MatMul(Node[] i)
    {
        const string op = "matmul";
        Node a = i[0], b = i[1];
        if (a.Shape.Length < 2 || b.Shape.Length < 2)
            throw Error(op, "both operands need at least 2 axes (use Reshape to add one for a vector)", a, b);
        RequireSameDType(op, a, b);
        RequireFloat(op, a, "a");
        int k1 = a.Shape[^1], k2 = b.Shape[^2];
        if (k1 != k2) throw Error(op, $"inner dimensions differ: a has {k1} columns, b has {k2} rows", a, b);
        var batch = Shapes.TryBroadcast(a.Shape.AsSpan(0, a.Shape.Length - 2), b.Shape.AsSpan(0, b.Shape.Length - 2))
            ?? throw Error(op, "batch axes cannot be broadcast together", a, b);
        return ([.. batch, a.Shape[^2], b.Shape[^1]], a.DType);
    }
}
