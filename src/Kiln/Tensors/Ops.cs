// Functional API (Ops.Softmax(x), Ops.Where(c, a, b), ...): ops that read better as functions or that
// take several tensors. Mixed dtypes are promoted here, visibly, by inserting cast nodes.
using Kiln.Graph;

namespace Kiln;

public static class Ops
{
    internal static Tensor Binary(OpDef op, Tensor a, Tensor b)
    {
        if (a.DType != b.DType)
        {
            var t = DTypeExtensions.Promote(a.DType, b.DType);
            a = a.Cast(t); b = b.Cast(t);
        }
        return Tensor.Apply(op, null, a, b);
    }

    public static Tensor Add(Tensor a, Tensor b) => Binary(OpTable.Add, a, b);
    public static Tensor Sub(Tensor a, Tensor b) => Binary(OpTable.Sub, a, b);
    public static Tensor Mul(Tensor a, Tensor b) => Binary(OpTable.Mul, a, b);
    /// <summary>True division, as torch.div: integer operands are divided as float32.</summary>
    public static Tensor Div(Tensor a, Tensor b)
    {
        if (!a.DType.IsFloat() && !b.DType.IsFloat()) { a = a.Cast(DType.Float32); b = b.Cast(DType.Float32); }
        return Binary(OpTable.Div, a, b);
    }
    public static Tensor Pow(Tensor a, Tensor b) => Binary(OpTable.Pow, a, b);
    public static Tensor Pow(Tensor a, double b) => Binary(OpTable.Pow, a, a.ScalarLike(b));
    public static Tensor Maximum(Tensor a, Tensor b) => Binary(OpTable.Maximum, a, b);
    public static Tensor Minimum(Tensor a, Tensor b) => Binary(OpTable.Minimum, a, b);
    public static Tensor MatMul(Tensor a, Tensor b) => a.MatMul(b);
    public static Tensor Eq(Tensor a, Tensor b) => Binary(OpTable.Eq, a, b);
    public static Tensor Ne(Tensor a, Tensor b) => Binary(OpTable.Ne, a, b);
    public static Tensor Lt(Tensor a, Tensor b) => Binary(OpTable.Lt, a, b);
    public static Tensor Le(Tensor a, Tensor b) => Binary(OpTable.Le, a, b);
    public static Tensor Gt(Tensor a, Tensor b) => Binary(OpTable.Gt, a, b);
    public static Tensor Ge(Tensor a, Tensor b) => Binary(OpTable.Ge, a, b);

    /// <summary>Elementwise choice with broadcasting: cond ? a : b.</summary>
    public static Tensor Where(Tensor cond, Tensor a, Tensor b)
    {
        if (a.DType != b.DType)
        {
            var t = DTypeExtensions.Promote(a.DType, b.DType);
            a = a.Cast(t); b = b.Cast(t);
        }
        return Tensor.Apply(OpTable.Where, null, cond, a, b);
    }

    public static Tensor Where(Tensor cond, Tensor a, double b) => Where(cond, a, a.ScalarLike(b));
    public static Tensor Where(Tensor cond, double a, Tensor b) => Where(cond, b.ScalarLike(a), b);

    public static Tensor Softmax(Tensor x, int axis = -1) => x.Softmax(axis);
    public static Tensor LogSoftmax(Tensor x, int axis = -1) => x.LogSoftmax(axis);

    /// <summary>x / √(mean(x², -1) + eps) · weight.</summary>
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps = 1e-6) => Tensor.Apply(OpTable.RmsNorm, new NormAttrs(eps), x, weight);

    /// <summary>(x − mean) / √(var + eps) · weight + bias over the last axis.</summary>
    public static Tensor LayerNorm(Tensor x, Tensor weight, Tensor bias, double eps = 1e-5) => Tensor.Apply(OpTable.LayerNorm, new NormAttrs(eps), x, weight, bias);

    public static Tensor Concat(IReadOnlyList<Tensor> tensors, int axis = 0)
    {
        if (tensors.Count == 0) throw new ArgumentException("concat: no tensors given");
        int a = Shapes.Axis(axis, tensors[0].Rank, "concat");
        return tensors.Count == 1 ? tensors[0] : Tensor.Apply(OpTable.Concat, new IntAttrs(a), [.. tensors]);
    }

    public static Tensor Stack(IReadOnlyList<Tensor> tensors, int axis = 0)
    {
        if (tensors.Count == 0) throw new ArgumentException("stack: no tensors given");
        int a = Shapes.Axis(axis, tensors[0].Rank + 1, "stack");
        foreach (var t in tensors)
            if (!Shapes.Equal(t.ShapeArray, tensors[0].ShapeArray))
                throw new ArgumentException($"stack: all tensors need the same shape; got {Shapes.Format(tensors[0].ShapeArray)} and {Shapes.Format(t.ShapeArray)}");
        return Concat(tensors.Select(t => t.Unsqueeze(a)).ToArray(), a);
    }

    /// <summary>Splits along an axis into pieces of the given sizes (views, no copies).</summary>
    public static Tensor[] Split(Tensor x, int[] sizes, int axis = 0)
    {
        int a = Shapes.Axis(axis, x.Rank, "split");
        if (sizes.Any(s => s < 0) || sizes.Sum() != x.ShapeArray[a])
            throw new ArgumentException($"split: sizes [{string.Join(", ", sizes)}] do not add up to axis {axis} of shape {Shapes.Format(x.ShapeArray)}");
        var r = new Tensor[sizes.Length];
        int at = 0;
        for (int i = 0; i < sizes.Length; i++) { r[i] = x.Slice(a, at, at + sizes[i]); at += sizes[i]; }
        return r;
    }

    /// <summary>Rows of <paramref name="table"/> (vocab, dim) picked by integer ids of any shape → ids.shape + (dim,).</summary>
    public static Tensor Embedding(Tensor table, Tensor ids)
    {
        if (table.Rank != 2) throw new ArgumentException($"embedding: table must be (vocab, dim), got {Shapes.Format(table.ShapeArray)}");
        var flat = table.IndexSelect(0, ids.Reshape(-1));
        return flat.Reshape([.. ids.ShapeArray, table.ShapeArray[1]]);
    }

    /// <summary>out = x; out[.., index[j], ..] += source[.., j, ..] along <paramref name="axis"/>.</summary>
    public static Tensor IndexAdd(Tensor x, int axis, Tensor index, Tensor source) =>
        Tensor.Apply(OpTable.IndexAdd, new IntAttrs(Shapes.Axis(axis, x.Rank, "index_add")), x, index, source);

    /// <summary>torch.gather along <paramref name="axis"/>.</summary>
    public static Tensor Gather(Tensor x, int axis, Tensor index) =>
        Tensor.Apply(OpTable.Gather, new IntAttrs(Shapes.Axis(axis, x.Rank, "gather")), x, index);

    /// <summary>torch.scatter_add along <paramref name="axis"/>.</summary>
    public static Tensor ScatterAdd(Tensor x, int axis, Tensor index, Tensor source) =>
        Tensor.Apply(OpTable.ScatterAdd, new IntAttrs(Shapes.Axis(axis, x.Rank, "scatter_add")), x, index, source);

    /// <summary>Σ over every tensor of the sum of its squares, as one kernel (the squared global norm of many gradients).</summary>
    public static Tensor SumOfSquares(IReadOnlyList<Tensor> tensors) => Tensor.Apply(OpTable.SumOfSquares, null, [.. tensors]);

    /// <summary>
    /// One AdamW step for many float32 parameters in one kernel (torch.optim.AdamW's formula). The step-dependent
    /// scalars are tensors (data), so every step runs the same graph. Returns the new (p, m, v) per parameter,
    /// views into one packed result.
    /// </summary>
    public static (Tensor P, Tensor M, Tensor V)[] AdamWUpdate(IReadOnlyList<Tensor> p, IReadOnlyList<Tensor> g, IReadOnlyList<Tensor> m, IReadOnlyList<Tensor> v,
        Tensor stepSize, Tensor denomScale, Tensor decay, Tensor gradScale, double beta1, double beta2, double eps)
    {
        if (p.Count != g.Count || p.Count != m.Count || p.Count != v.Count) throw new ArgumentException($"adamw_update: {p.Count} parameters, {g.Count} gradients, {m.Count} and {v.Count} moments");
        var inputs = new List<Tensor> { stepSize, denomScale, decay, gradScale };
        for (int k = 0; k < p.Count; k++) { inputs.Add(p[k]); inputs.Add(g[k]); inputs.Add(m[k]); inputs.Add(v[k]); }
        var packed = Tensor.Apply(OpTable.AdamWUpdate, new AdamWAttrs(beta1, beta2, eps), [.. inputs]);
        var parts = packed.Unpack(p.SelectMany(t => new[] { t.ShapeArray, t.ShapeArray, t.ShapeArray }).ToArray());   // p', m', v' per parameter
        return Enumerable.Range(0, p.Count).Select(k => (parts[3 * k], parts[3 * k + 1], parts[3 * k + 2])).ToArray();
    }

    /// <summary>
    /// Marks <paramref name="x"/> as the input of a gradient-checkpointed segment (everything computed from it
    /// up to the next mark). Its value is unchanged; autograd recomputes the segment during the backward pass
    /// instead of keeping its activations, trading one extra forward of the segment for memory.
    /// </summary>
    public static Tensor Checkpoint(Tensor x) => Tensor.Apply(OpTable.Checkpoint, null, x);

    /// <summary>
    /// softmax(scale·q·kᵀ, causal) · v in one op: q (..., T, D), k (..., S, D), v (..., S, Dv) with broadcasting
    /// batch axes (pass k, v with a size-1 group axis for grouped-query attention). Causal is bottom-right
    /// aligned: query i sees keys j ≤ i + S − T. Scale defaults to 1/√D. The (T, S) scores are never stored.
    /// </summary>
    /// <param name="validKeys">Optional integer scalar: only the first validKeys positions of k/v are used (a KV
    /// cache with spare capacity); as data, it keeps the graph the same from one decode step to the next.</param>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, bool causal = false, double? scale = null, Tensor? validKeys = null)
    {
        var attrs = new AttentionAttrs(scale ?? 1 / Math.Sqrt(q.Shape[^1]), causal);
        return validKeys is null ? Tensor.Apply(OpTable.Attention, attrs, q, k, v) : Tensor.Apply(OpTable.Attention, attrs, q, k, v, validKeys);
    }

    /// <summary>Fills everything above the diagonal of the last two axes with −∞ (causal attention).</summary>
    public static Tensor CausalMask(Tensor scores) => scores.Triangle(lower: true, diagonal: 0, fill: double.NegativeInfinity);

    /// <summary>
    /// Mean cross-entropy of logits (N, classes) against integer targets (N,), skipping targets equal to
    /// <paramref name="ignoreIndex"/>, with PyTorch's label smoothing.
    /// </summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100, double labelSmoothing = 0)
    {
        if (labelSmoothing is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(labelSmoothing), $"cross_entropy: label_smoothing must be in [0, 1], got {labelSmoothing}");
        return Tensor.Apply(OpTable.CrossEntropy, new CrossEntropyAttrs(ignoreIndex, labelSmoothing), logits, targets);
    }
}
