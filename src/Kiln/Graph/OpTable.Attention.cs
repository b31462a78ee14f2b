// Scaled dot-product attention as one op: softmax(scale·q·kᵀ [causal]) · v without the (T, S) score matrix.
// Batch axes broadcast (grouped-query attention passes k and v with a size-1 group axis). Causal masking is
// bottom-right aligned (query i sees keys j ≤ i + S − T), so a decode step with a KV cache is causal too.
using Kiln.Cpu;

namespace Kiln.Graph;

public static partial class OpTable
{
    /// <summary>Inputs q, k, v and optionally the number of valid keys (an integer scalar, data: a KV cache
    /// with spare capacity passes its fill level, so every decode step has the same graph).</summary>
    public static readonly OpDef Attention = new("attention", -1, FusionClass.Opaque,
        (i, a) => AttentionShape(i, (AttentionAttrs)a!),
        (x, n) => AttentionKernel.Forward(x[0], x[1], x[2], x.Length > 3 ? x[3] : null, (AttentionAttrs)n.Attrs!, n.Shape),
        c =>
        {
            Tensor q = c.Inputs[0], k = c.Inputs[1], v = c.Inputs[2];
            Tensor[] ins = c.Inputs.Length > 3 ? [q, k, v, c.Output, c.Upstream, c.Inputs[3]] : [q, k, v, c.Output, c.Upstream];
            var packed = Tensor.Apply(AttentionGrad!, c.Node.Attrs, ins);
            Tensor?[] grads = packed.Unpack(q.ShapeArray, k.ShapeArray, v.ShapeArray);
            return c.Inputs.Length > 3 ? [.. grads, null] : grads;
        });

    /// <summary>dq, dk and dv of attention packed into one flat tensor (one pass, recomputing the probabilities).</summary>
    public static readonly OpDef AttentionGrad = new("attention_grad", -1, FusionClass.Opaque,
        (i, _) => ([checked((int)(Shapes.Numel(i[0].Shape) + Shapes.Numel(i[1].Shape) + Shapes.Numel(i[2].Shape)))], i[0].DType),
        (x, n) => AttentionKernel.Backward(x[0], x[1], x[2], x[3], x[4], x.Length > 5 ? x[5] : null, (AttentionAttrs)n.Attrs!),
        null);

    private static (int[], DType) AttentionShape(Node[] i, AttentionAttrs a)
    {
        if (i.Length is not (3 or 4)) throw ShapeRules.Error("attention", $"takes q, k, v and optionally the valid key count, got {i.Length} inputs", i);
        foreach (var n in i.AsSpan(0, 3)) ShapeRules.RequireFloat("attention", n, "q/k/v");
        if (i.Length == 4 && (i[3].Shape.Length != 0 || i[3].DType is not (DType.Int32 or DType.Int64)))
            throw ShapeRules.Error("attention", "the valid key count must be an integer scalar", i);
        Node q = i[0], k = i[1], v = i[2];
        if (q.DType != k.DType || q.DType != v.DType) throw ShapeRules.Error("attention", "q, k and v must have one dtype", i);
        if (q.Shape.Length < 2 || k.Shape.Length < 2 || v.Shape.Length < 2)
            throw ShapeRules.Error("attention", "q, k, v must be (..., T, D), (..., S, D), (..., S, Dv)", i);
        if (q.Shape[^1] != k.Shape[^1]) throw ShapeRules.Error("attention", $"q and k must share the head dim (got {q.Shape[^1]} and {k.Shape[^1]})", i);
        if (k.Shape[^2] != v.Shape[^2]) throw ShapeRules.Error("attention", $"k and v must have the same number of positions (got {k.Shape[^2]} and {v.Shape[^2]})", i);
        if (a.Causal && i.Length == 3 && q.Shape[^2] > k.Shape[^2]) throw ShapeRules.Error("attention", $"causal attention needs at least as many keys as queries (T={q.Shape[^2]}, S={k.Shape[^2]})", i);
        var batch = Shapes.TryBroadcast(q.Shape.AsSpan(0, q.Shape.Length - 2), k.Shape.AsSpan(0, k.Shape.Length - 2)) is { } qk
            ? Shapes.TryBroadcast(qk, v.Shape.AsSpan(0, v.Shape.Length - 2)) : null;
        if (batch is null) throw ShapeRules.Error("attention", "the batch axes of q, k and v do not broadcast", i);
        return ([.. batch, q.Shape[^2], v.Shape[^1]], q.DType);
    }
}

/// <summary>Softmax scale (usually 1/√D) and bottom-right-aligned causal masking.</summary>
internal sealed record AttentionAttrs(double Scale, bool Causal) : IOpAttrs
{
    public void AddTo(ref HashCode h) { h.Add(Scale); h.Add(Causal); }
    public override string ToString() => $"scale={Scale}{(Causal ? " causal" : "")}";
}
