// Op table rows for indexing, layout (concat, pad, triangle) and language-model ops (RoPE, cross-entropy).
using Kiln.Cpu;
using Kiln.Runtime;

namespace Kiln.Graph;

public static partial class OpTable
{
    // ---------------- indexing ----------------
    public static readonly OpDef IndexSelect = new("index_select", 2, FusionClass.Opaque,
        (i, a) =>
        {
            int axis = ((IntAttrs)a!).Value;
            ShapeRules.RequireInteger("index_select", i[1], "index");
            if (i[1].Shape.Length != 1) throw ShapeRules.Error("index_select", "index must be 1-D", i);
            var s = (int[])i[0].Shape.Clone(); s[axis] = i[1].Shape[0];
            return (s, i[0].DType);
        },
        (x, n) => Indexing.IndexSelect(x[0], x[1], ((IntAttrs)n.Attrs!).Value, n.Shape),
        c => [Ops.IndexAdd(Tensor.ZerosLike(c.Inputs[0]), c.Attrs<IntAttrs>().Value, c.Inputs[1], c.Upstream), null]);

    public static readonly OpDef IndexAdd = new("index_add", 3, FusionClass.Opaque,
        (i, a) =>
        {
            int axis = ((IntAttrs)a!).Value;
            ShapeRules.RequireInteger("index_add", i[1], "index");
            ShapeRules.RequireSameDType("index_add", i[0], i[2]);
            var expect = (int[])i[0].Shape.Clone();
            if (i[1].Shape.Length != 1) throw ShapeRules.Error("index_add", "index must be 1-D", i);
            expect[axis] = i[1].Shape[0];
            if (!Shapes.Equal(expect, i[2].Shape)) throw ShapeRules.Error("index_add", $"source must have shape {Shapes.Format(expect)}", i);
            return (i[0].Shape, i[0].DType);
        },
        (x, n) => Indexing.IndexAdd(x[0], x[1], x[2], ((IntAttrs)n.Attrs!).Value),
        c => [c.Upstream, null, c.Upstream.IndexSelect(c.Attrs<IntAttrs>().Value, c.Inputs[1])]);

    public static readonly OpDef Gather = new("gather", 2, FusionClass.Opaque,
        (i, a) =>
        {
            ShapeRules.RequireInteger("gather", i[1], "index");
            if (i[1].Shape.Length != i[0].Shape.Length) throw ShapeRules.Error("gather", "index must have the same rank as x", i);
            IndexWithinInput("gather", i, ((IntAttrs)a!).Value);
            return (i[1].Shape, i[0].DType);
        },
        (x, n) => Indexing.Gather(x[0], x[1], ((IntAttrs)n.Attrs!).Value),
        c => [Ops.ScatterAdd(Tensor.ZerosLike(c.Inputs[0]), c.Attrs<IntAttrs>().Value, c.Inputs[1], c.Upstream), null]);

    public static readonly OpDef ScatterAdd = new("scatter_add", 3, FusionClass.Opaque,
        (i, a) =>
        {
            ShapeRules.RequireInteger("scatter_add", i[1], "index");
            ShapeRules.RequireSameDType("scatter_add", i[0], i[2]);
            if (i[1].Shape.Length != i[0].Shape.Length || !Shapes.Equal(i[1].Shape, i[2].Shape))
                throw ShapeRules.Error("scatter_add", "index and source must have the same shape and x's rank", i);
            IndexWithinInput("scatter_add", i, ((IntAttrs)a!).Value);
            return (i[0].Shape, i[0].DType);
        },
        (x, n) => Indexing.ScatterAdd(x[0], x[1], x[2], ((IntAttrs)n.Attrs!).Value),
        c => [c.Upstream, null, Ops.Gather(c.Upstream, c.Attrs<IntAttrs>().Value, c.Inputs[1])]);

    /// <summary>As in PyTorch: outside the indexed axis the index may not be larger than x.</summary>
    private static void IndexWithinInput(string op, Node[] i, int axis)
    {
        for (int d = 0; d < i[0].Shape.Length; d++)
            if (d != axis && i[1].Shape[d] > i[0].Shape[d])
                throw ShapeRules.Error(op, $"index size {i[1].Shape[d]} on axis {d} exceeds x's size {i[0].Shape[d]} (only axis {axis} is indexed)", i);
    }

    // ---------------- layout ----------------
    public static readonly OpDef Concat = new("concat", -1, FusionClass.Opaque,
        (i, a) =>
        {
            int axis = ((IntAttrs)a!).Value;
            var s = (int[])i[0].Shape.Clone();
            for (int k = 1; k < i.Length; k++)
            {
                ShapeRules.RequireSameDType("concat", i[0], i[k]);
                bool ok = i[k].Shape.Length == s.Length;
                for (int d = 0; ok && d < s.Length; d++) ok = d == axis || i[k].Shape[d] == s[d];
                if (!ok) throw ShapeRules.Error("concat", $"input {k} does not match input 0 outside axis {axis}", i);
                s[axis] += i[k].Shape[axis];
            }
            return (s, i[0].DType);
        },
        (x, n) => LayoutKernels.Concat(x, ((IntAttrs)n.Attrs!).Value, n.Shape),
        c =>
        {
            int axis = c.Attrs<IntAttrs>().Value, at = 0;
            var r = new Tensor?[c.Inputs.Length];
            for (int k = 0; k < r.Length; k++)
            {
                int len = c.Inputs[k].ShapeArray[axis];
                r[k] = c.Upstream.Slice(axis, at, at + len);
                at += len;
            }
            return r;
        }, widensHalf: false);

    public static readonly OpDef Pad = new("pad", 1, FusionClass.Opaque,
        (i, a) =>
        {
            var p = (PadAttrs)a!;
            if (i[0].DType == DType.Bool) throw ShapeRules.Error("pad", "padding bool tensors is not supported; cast to int32 first", i);
            return (i[0].Shape.Select((d, k) => d + p.Before[k] + p.After[k]).ToArray(), i[0].DType);
        },
        (x, n) => { var p = (PadAttrs)n.Attrs!; return LayoutKernels.Pad(x[0], p.Before, n.Shape, p.Value); },
        c =>
        {
            var p = c.Attrs<PadAttrs>();
            var g = c.Upstream;
            for (int d = 0; d < p.Before.Length; d++)
                if (p.Before[d] != 0 || p.After[d] != 0) g = g.Slice(d, p.Before[d], p.Before[d] + c.Inputs[0].ShapeArray[d]);
            return [g];
        });

    public static readonly OpDef Triangle = new("triangle", 1, FusionClass.Elementwise,
        (i, _) =>
        {
            ShapeRules.RequireFloat("triangle", i[0]);
            if (i[0].Shape.Length < 2) throw ShapeRules.Error("triangle", "x needs at least 2 axes", i);
            return (i[0].Shape, i[0].DType);
        },
        (x, n) => { var t = (TriangleAttrs)n.Attrs!; return LayoutKernels.Triangle(x[0], t.Lower, t.Diagonal, t.Fill); },
        c => { var t = c.Attrs<TriangleAttrs>(); return [c.Upstream.Triangle(t.Lower, t.Diagonal, 0)]; });

    // ---------------- language-model ops ----------------
    /// <summary>x, and optionally the position offset as an integer scalar input (data, so a decode step with a
    /// growing position keeps one graph); without it the offset attribute applies.</summary>
    public static readonly OpDef Rope = new("rope", -1, FusionClass.Opaque,
        (i, _) =>
        {
            if (i.Length is not (1 or 2)) throw ShapeRules.Error("rope", $"takes x and optionally a position offset, got {i.Length} inputs", i);
            ShapeRules.RequireFloat("rope", i[0]);
            if (i[0].Shape.Length < 2 || i[0].Shape[^1] % 2 != 0 || i[0].Shape[^1] == 0)
                throw ShapeRules.Error("rope", "x must have shape (..., seq, head_dim) with an even head_dim", i);
            if (i.Length == 2 && (i[1].Shape.Length != 0 || i[1].DType is not (DType.Int32 or DType.Int64)))
                throw ShapeRules.Error("rope", "the position offset must be an integer scalar", i);
            return (i[0].Shape, i[0].DType);
        },
        (x, n) =>
        {
            var a = (RopeAttrs)n.Attrs!;
            int offset = x.Length == 2 ? (int)(x[1].DType == DType.Int32 ? x[1].Span<int>()[0] : x[1].Span<long>()[0]) : a.Offset;
            return ModelKernels.Rope(x[0], new(a.Theta, a.Interleaved, offset, a.Inverse));
        },
        c =>
        {
            var a = c.Attrs<RopeAttrs>() with { Inverse = !c.Attrs<RopeAttrs>().Inverse };
            return c.Inputs.Length == 2 ? [Tensor.Apply(Rope!, a, c.Upstream, c.Inputs[1]), null] : [Tensor.Apply(Rope!, a, c.Upstream)];
        });

    public static readonly OpDef CrossEntropy = new("cross_entropy", 2, FusionClass.Opaque,
        (i, _) => CrossEntropyShape(i),
        (x, n) => { var a = (CrossEntropyAttrs)n.Attrs!; return ModelKernels.CrossEntropy(x[0], x[1], a.IgnoreIndex, a.LabelSmoothing); },
        c => [Tensor.Apply(CrossEntropyGrad!, c.Node.Attrs, c.Inputs[0], c.Inputs[1], c.Upstream), null]);

    public static readonly OpDef CrossEntropyGrad = new("cross_entropy_grad", 3, FusionClass.Opaque,
        (i, _) => (i[0].Shape, i[0].DType),
        (x, n) => { var a = (CrossEntropyAttrs)n.Attrs!; return ModelKernels.CrossEntropyGrad(x[0], x[1], x[2], a.IgnoreIndex, a.LabelSmoothing); },
        null);

    private static (int[], DType) CrossEntropyShape(Node[] i)
    {
        ShapeRules.RequireFloat("cross_entropy", i[0], "logits");
        ShapeRules.RequireInteger("cross_entropy", i[1], "targets");
        if (i[0].Shape.Length != 2 || i[1].Shape.Length != 1 || i[1].Shape[0] != i[0].Shape[0])
            throw ShapeRules.Error("cross_entropy", "logits must be (N, classes) and targets (N,)", i);
        return ([], i[0].DType);
    }

    // ---------------- made by the optimizer ----------------
    /// <summary>A fused group of elementwise ops (Passes/ElementwiseFusion); never built by users, so no gradient.</summary>
    public static readonly OpDef FusedElementwise = new("fused_elementwise", -1, FusionClass.Elementwise,
        (i, _) => throw new InvalidOperationException("fused_elementwise nodes are made by the optimizer"),
        (x, n) => FusedKernel.Run(x, n), null);

    /// <summary>x·W + s·(x·A)·B (+ bias) as one op (Passes/LoraFusion); made by the optimizer only.</summary>
    public static readonly OpDef LoraLinear = new("lora_linear", -1, FusionClass.MatMul,
        (i, _) => throw new InvalidOperationException("lora_linear nodes are made by the optimizer"),
        (x, n) => LoraKernel.Run(x, n), null);

    /// <summary>matmul, then bias and/or activation per output row (Passes/EpilogueFusion); made by the optimizer only.</summary>
    public static readonly OpDef MatMulEpilogue = new("matmul_epilogue", -1, FusionClass.MatMul,
        (i, _) => throw new InvalidOperationException("matmul_epilogue nodes are made by the optimizer"),
        (x, n) => MatMulKernel.RunWithEpilogue(x, n), null);

    /// <summary>silu(x·Wg) ⊙ (x·Wu) as one op (Passes/SwiGluFusion); made by the optimizer only.</summary>
    public static readonly OpDef SwiGlu = new("swiglu", 3, FusionClass.MatMul,
        (i, _) => throw new InvalidOperationException("swiglu nodes are made by the optimizer"),
        (x, n) => MatMulKernel.RunSwiGlu(x, n), null);
}
