// Constant folding: a node whose inputs are all fill constants (Tensor.Full, the scalars of `x * 2`, or fills
// this pass made) is evaluated at optimization time into one fill of its shape. Only uniform results are
// folded (elementwise ops, views and the reductions sum/mean/max/min of fills), so a fill's value stays
// structure, not data: the plan keeps a one-element buffer seen with zero strides, never user values.
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Passes;

internal sealed class ConstantFolding : IRewritePass
{
    public string Name => "constfold";

    public Node? Rewrite(Node n, Func<Node, bool> isInput)
    {
        var ins = n.InputArray;
        if (ins.Length == 0 || isInput(n)) return null;
        foreach (var i in ins) if (!IsFill(i)) return null;
        double? v = n.Op.Fusion switch
        {
            FusionClass.View => Fill(ins[0]),
            FusionClass.Elementwise when n.Op != OpTable.Triangle && n.Op != OpTable.FusedElementwise => Scalar(n),
            FusionClass.Reduction => Reduction(n),
            _ => null,
        };
        return v is { } value ? Make(value, n.Shape, n.DType, n.Device) : null;
    }

    /// <summary>A leaf filled with one value (no inputs, FillAttrs, a value to read).</summary>
    internal static bool IsFill(Node n) => n.InputArray.Length == 0 && n.Attrs is FillAttrs && n.Value is not null;

    private static double Fill(Node n) => ((FillAttrs)n.Attrs!).Value;

    /// <summary>A realised fill of <paramref name="shape"/>: one element seen through zero strides.</summary>
    internal static Node Make(double value, int[] shape, DType dtype, Device device)
    {
        var one = Realised.Contiguous(new Runtime.Buffer(dtype, Runtime.Buffer.NewArray(dtype, 1), 1), []);
        Cpu.Convert.WriteDoubles([value], one);
        Span<double> back = [0];
        Cpu.Convert.ReadDoubles(one, back);   // the value as the dtype holds it (6.1 in f32 is 6.099999904632568)
        var r = new Realised(one.Buffer, 0, shape, new long[shape.Length]);
        return new Node(OpTable.Constant, [], new FillAttrs(back[0]), shape, dtype, device, Tensor.OnDevice(r, device));
    }

    /// <summary>The op's own kernel on 0-d copies of its fill inputs (same rounding as at run time).</summary>
    private static double Scalar(Node n)
    {
        var ins = n.InputArray;
        var vals = new Realised[ins.Length];
        var placeholders = new Node[ins.Length];
        for (int k = 0; k < ins.Length; k++)
        {
            vals[k] = Realised.Contiguous(new Runtime.Buffer(ins[k].DType, Runtime.Buffer.NewArray(ins[k].DType, 1), 1), []);
            Cpu.Convert.WriteDoubles([Fill(ins[k])], vals[k]);
            placeholders[k] = new Node(OpTable.Constant, [], null, [], ins[k].DType, Device.Cpu);
        }
        // Folding is host arithmetic whatever device the graph runs on.
        var scalar = new Node(n.Op, placeholders, n.Attrs, [], n.DType, Device.Cpu);
        var r = Evaluator.RunKernel(scalar, vals);
        Span<double> v = [0];
        Cpu.Convert.ReadDoubles(r, v);
        Evaluator.Release(r);
        return v[0];
    }

    private static double? Reduction(Node n)
    {
        if (n.Attrs is not AxesAttrs ax || !n.DType.IsFloat()) return null;
        var x = n.InputArray[0];
        long count = 1;
        foreach (int a in ax.Axes) count *= x.Shape[a];
        double v = Fill(x);
        if (count == 0) return null;
        if (n.Op == OpTable.Sum) return v * count;
        if (n.Op == OpTable.Mean || n.Op == OpTable.Max || n.Op == OpTable.Min) return v;
        return null;
    }
}
