// Op table rows for reductions, matmul, views, normalizations, indexing, layout and model ops.
using Kiln.Cpu;
using Kiln.Runtime;

namespace Kiln.Graph;

public static partial class OpTable
{
    // ---------------- reductions ----------------
    private static OpDef Reduction(string name, ReduceKind kind, GradRule? grad, bool floatOnly = true) =>
        new(name, 1, FusionClass.Reduction, (i, a) => ShapeRules.Reduction(name, i, a, floatOnly, needsElements: kind is ReduceKind.Max or ReduceKind.Min),
            (x, n) => Reduce.Run(x[0], ((AxesAttrs)n.Attrs!).Axes, n.Shape, kind), grad);

    public static readonly OpDef Sum = Reduction("sum", ReduceKind.Sum, c => [Expand(c, c.Upstream)], floatOnly: false);
    public static readonly OpDef Mean = Reduction("mean", ReduceKind.Mean, c => [Expand(c, c.Upstream) / (double)ReducedCount(c)]);
    public static readonly OpDef Max = Reduction("max", ReduceKind.Max, ExtremumGrad, floatOnly: false);
    public static readonly OpDef Min = Reduction("min", ReduceKind.Min, ExtremumGrad, floatOnly: false);
    public static readonly OpDef LogSumExp = Reduction("logsumexp", ReduceKind.LogSumExp,
        c => [Expand(c, c.Upstream) * (c.Inputs[0] - Expand(c, c.Output)).Exp()]);
    public static readonly OpDef ArgMax = new("argmax", 1, FusionClass.Reduction,
        (i, a) => { var (s, _) = ShapeRules.Reduction("argmax", i, a, floatOnly: false, needsElements: true); return (s, DType.Int64); },
        (x, n) => Reduce.Run(x[0], ((AxesAttrs)n.Attrs!).Axes, n.Shape, ReduceKind.ArgMax), null);
    public static readonly OpDef Var = new("var", 1, FusionClass.Reduction, (i, a) => ShapeRules.Reduction("var", i, a),
        (x, n) => { var a = (VarAttrs)n.Attrs!; return Reduce.Run(x[0], a.Axes, n.Shape, ReduceKind.Var, a.Correction); },
        c =>
        {
            var a = c.Attrs<VarAttrs>();
            var x = c.Inputs[0];
            long count = ReducedCount(c);
            return [Expand(c, c.Upstream) * (x - x.Mean(a.Axes, keepDim: true)) * (2.0 / (count - a.Correction))];
        });

    private static Tensor?[] ExtremumGrad(GradContext c)
    {
        var mask = Ops.Eq(c.Inputs[0], Expand(c, c.Output)).Cast(c.Inputs[0].DType);
        var axes = c.Attrs<AxesAttrs>().Axes;
        return [mask * Expand(c, c.Upstream) / mask.Sum(axes, keepDim: true)];
    }

    private static long ReducedCount(GradContext c)
    {
        int[] axes = c.Node.Attrs is VarAttrs v ? v.Axes : ((AxesAttrs)c.Node.Attrs!).Axes;
        long n = 1;
        foreach (int a in axes) n *= c.Inputs[0].ShapeArray[a];
        return n;
    }

    /// <summary>Brings a reduced tensor back to the input's shape (re-inserting reduced axes, then broadcasting).</summary>
    private static Tensor Expand(GradContext c, Tensor reduced)
    {
        var (axes, keep) = c.Node.Attrs is VarAttrs v ? (v.Axes, v.KeepDim) : (((AxesAttrs)c.Node.Attrs!).Axes, ((AxesAttrs)c.Node.Attrs!).KeepDim);
        var shape = c.Inputs[0].ShapeArray;
        if (!keep) reduced = reduced.Reshape(ShapeRules.Reduced(shape, axes, keepDim: true));
        return reduced.Expand(shape);
    }

    // ---------------- matmul ----------------
    public static readonly OpDef MatMul = new("matmul", 2, FusionClass.MatMul, (i, _) => ShapeRules.MatMul(i),
        (x, n) => MatMulKernel.Run(x[0], x[1], n.Shape),
        c =>
        {
            Tensor a = c.Inputs[0], b = c.Inputs[1], g = c.Upstream;
            // A weight shared by every batch (x (..., m, k) · W (k, n), a Linear layer): the batch folds into the GEMM's
            // inner dimension, dW = x₂ᵀ·g₂ over all rows at once — one GEMM, instead of a product per batch summed after.
            var gradB = b.Rank == 2 && a.Rank > 2
                ? a.Reshape(-1, a.Dim(-1)).Transpose(0, 1).MatMul(g.Reshape(-1, g.Dim(-1)))
                : SumTo(a.Transpose(-1, -2).MatMul(g), b);
            return [SumTo(g.MatMul(b.Transpose(-1, -2)), a), gradB];
        }, widensHalf: false);   // bf16/f16 are widened inside the GEMM's packing instead

    // ---------------- views (no data moved when the layout allows) ----------------
    public static readonly OpDef Reshape = new("reshape", 1, FusionClass.View,
        (i, a) => (((ShapeAttrs)a!).Shape, i[0].DType), (x, n) => Views.Reshape(x[0], n.Shape),
        c => [c.Upstream.Reshape(c.Inputs[0].ShapeArray)], widensHalf: false);

    public static readonly OpDef Permute = new("permute", 1, FusionClass.View,
        (i, a) =>
        {
            var perm = ((ShapeAttrs)a!).Shape;
            var shape = new int[perm.Length];
            for (int k = 0; k < perm.Length; k++) shape[k] = i[0].Shape[perm[k]];
            return (shape, i[0].DType);
        },
        (x, n) => Views.Permute(x[0], ((ShapeAttrs)n.Attrs!).Shape),
        c =>
        {
            var perm = c.Attrs<ShapeAttrs>().Shape;
            var inv = new int[perm.Length];
            for (int i = 0; i < perm.Length; i++) inv[perm[i]] = i;
            return [c.Upstream.Permute(inv)];
        }, widensHalf: false);

    public static readonly OpDef Slice = new("slice", 1, FusionClass.View,
        (i, a) =>
        {
            var s = (SliceAttrs)a!;
            var shape = (int[])i[0].Shape.Clone();
            shape[s.Axis] = (int)Math.Max(0, ((long)s.Stop - s.Start + s.Step - 1) / s.Step);
            return (shape, i[0].DType);
        },
        (x, n) => { var s = (SliceAttrs)n.Attrs!; return Views.Slice(x[0], s.Axis, s.Start, s.Stop, s.Step); },
        c =>
        {
            var s = c.Attrs<SliceAttrs>();
            var x = c.Inputs[0];
            var idx = Tensor.Arange(s.Start, s.Start + s.Step * c.Upstream.ShapeArray[s.Axis], s.Step, DType.Int64, x.Device);
            return [Ops.IndexAdd(Tensor.ZerosLike(x), s.Axis, idx, c.Upstream)];
        }, widensHalf: false);

    public static readonly OpDef Expand_ = new("expand", 1, FusionClass.View,
        (i, a) =>
        {
            var target = ((ShapeAttrs)a!).Shape;
            var b = Shapes.TryBroadcast(i[0].Shape, target);
            if (b is null || !Shapes.Equal(b, target))
                throw ShapeRules.Error("expand", $"cannot expand {Shapes.Format(i[0].Shape)} to {Shapes.Format(target)}", i);
            return (target, i[0].DType);
        },
        (x, n) => Views.Expand(x[0], n.Shape),
        c => [SumTo(c.Upstream, c.Inputs[0])], widensHalf: false);

    // ---------------- softmax and normalizations ----------------
    public static readonly OpDef Softmax = new("softmax", 1, FusionClass.Opaque,
        (i, a) => { ShapeRules.UnaryFloat("softmax", i); Shapes.Axis(((IntAttrs)a!).Value, i[0].Shape.Length, "softmax"); return (i[0].Shape, i[0].DType); },
        (x, n) => RowKernels.Softmax(x[0], ((IntAttrs)n.Attrs!).Value),
        c =>
        {
            int axis = c.Attrs<IntAttrs>().Value;
            Tensor y = c.Output, g = c.Upstream;
            return [y * (g - (g * y).Sum([axis], keepDim: true))];
        });

    public static readonly OpDef LogSoftmax = new("log_softmax", 1, FusionClass.Opaque,
        (i, a) => { ShapeRules.UnaryFloat("log_softmax", i); Shapes.Axis(((IntAttrs)a!).Value, i[0].Shape.Length, "log_softmax"); return (i[0].Shape, i[0].DType); },
        (x, n) => RowKernels.LogSoftmax(x[0], ((IntAttrs)n.Attrs!).Value),
        c =>
        {
            int axis = c.Attrs<IntAttrs>().Value;
            return [c.Upstream - c.Output.Exp() * c.Upstream.Sum([axis], keepDim: true)];
        });

    public static readonly OpDef RmsNorm = new("rms_norm", 2, FusionClass.Opaque, (i, _) => NormShape("rms_norm", i),
        (x, n) => RowKernels.RmsNorm(x[0], x[1], ((NormAttrs)n.Attrs!).Eps),
        c =>
        {
            Tensor x = c.Inputs[0], w = c.Inputs[1];
            var packed = Tensor.Apply(RmsNormGrad!, c.Node.Attrs, x, w, c.Upstream);   // [dx | dw], one kernel
            return packed.Unpack(x.ShapeArray, w.ShapeArray);
        });

    /// <summary>RMSNorm's backward (Cpu/NormGradKernels): dx and dw packed flat. First-order only.</summary>
    public static readonly OpDef RmsNormGrad = new("rms_norm_grad", 3, FusionClass.Opaque,
        (i, _) => ([checked((int)(Shapes.Numel(i[0].Shape) + i[1].Shape[0]))], i[0].DType),
        (x, n) => NormGradKernels.RmsNorm(x[0], x[1], x[2], ((NormAttrs)n.Attrs!).Eps), null);

    /// <summary>LayerNorm's backward: dx, dw and db packed flat. First-order only.</summary>
    public static readonly OpDef LayerNormGrad = new("layer_norm_grad", 3, FusionClass.Opaque,
        (i, _) => ([checked((int)(Shapes.Numel(i[0].Shape) + 2 * i[1].Shape[0]))], i[0].DType),
        (x, n) => NormGradKernels.LayerNorm(x[0], x[1], x[2], ((NormAttrs)n.Attrs!).Eps), null);

    public static readonly OpDef LayerNorm = new("layer_norm", 3, FusionClass.Opaque, (i, _) => NormShape("layer_norm", i),
        (x, n) => RowKernels.LayerNorm(x[0], x[1], x[2], ((NormAttrs)n.Attrs!).Eps),
        c =>
        {
            Tensor x = c.Inputs[0], w = c.Inputs[1];
            var packed = Tensor.Apply(LayerNormGrad!, c.Node.Attrs, x, w, c.Upstream);   // [dx | dw | db], one kernel
            return packed.Unpack(x.ShapeArray, w.ShapeArray, c.Inputs[2].ShapeArray);
        });

    private static (int[], DType) NormShape(string op, Node[] i)
    {
        ShapeRules.RequireFloat(op, i[0]);
        if (i[0].Shape.Length == 0) throw ShapeRules.Error(op, "x needs at least one axis", i);
        int d = i[0].Shape[^1];
        for (int k = 1; k < i.Length; k++)
        {
            ShapeRules.RequireSameDType(op, i[0], i[k]);
            if (i[k].Shape.Length != 1 || i[k].Shape[0] != d)
                throw ShapeRules.Error(op, $"argument {(k == 1 ? "weight" : "bias")} must have shape ({d},) to match the last axis of x", i);
        }
        return (i[0].Shape, i[0].DType);
    }
}
