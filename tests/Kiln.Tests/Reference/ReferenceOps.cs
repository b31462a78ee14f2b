// How each reference.json op name is spelled with Kiln's API. This mapping is the only test-side code
// between PyTorch's numbers and Kiln's ops, so it stays literal.
namespace Kiln.Tests.Reference;

using Ops = Kiln.Ops;   // the Kiln.Tests.Ops test namespace would otherwise shadow Kiln.Ops here

public static class ReferenceOps
{
    public static Tensor Build(RefCase c, Tensor[] x)
    {
        int[]? Axes() => c.Attrs.TryGetProperty("axes", out var a) && a.ValueKind != System.Text.Json.JsonValueKind.Null ? c.IntArray("axes") : null;
        bool Keep() => c.Bool("keepdim");
        return c.Op switch
        {
            "neg" => -x[0], "abs" => x[0].Abs(), "exp" => x[0].Exp(), "log" => x[0].Log(), "sqrt" => x[0].Sqrt(),
            "rsqrt" => x[0].Rsqrt(), "sin" => x[0].Sin(), "cos" => x[0].Cos(), "tanh" => x[0].Tanh(),
            "sigmoid" => x[0].Sigmoid(), "relu" => x[0].Relu(), "gelu_tanh" => x[0].Gelu(GeluApproximation.Tanh),
            "gelu_erf" => x[0].Gelu(), "silu" => x[0].Silu(), "square" => x[0].Square(),
            "add" => x[0] + x[1], "sub" => x[0] - x[1], "mul" => x[0] * x[1], "div" => x[0] / x[1],
            "maximum" => Ops.Maximum(x[0], x[1]), "minimum" => Ops.Minimum(x[0], x[1]), "pow" => Ops.Pow(x[0], x[1]),
            "eq" => Ops.Eq(x[0], x[1]), "ne" => Ops.Ne(x[0], x[1]), "lt" => x[0] < x[1], "le" => x[0] <= x[1],
            "gt" => x[0] > x[1], "ge" => x[0] >= x[1],
            "where" => Ops.Where(x[0], x[1], x[2]),
            "cast_f64_to_i64_trunc" => x[0].Cast(DType.Int64),
            "sum" => x[0].Sum(Axes(), Keep()), "mean" => x[0].Mean(Axes(), Keep()),
            "logsumexp" => x[0].LogSumExp(Axes(), Keep()), "var_unbiased" => x[0].Var(Axes(), Keep(), correction: 1),
            "max" => x[0].Max([c.Int("axis")], Keep()), "min" => x[0].Min([c.Int("axis")], Keep()),
            "argmax" => x[0].ArgMax(c.Int("axis"), Keep()),
            "matmul" => x[0].MatMul(x[1]),
            "matmul_transposed_b" => x[0].MatMul(x[1].T),
            "softmax" => x[0].Softmax(c.Int("axis")), "log_softmax" => x[0].LogSoftmax(c.Int("axis")),
            "rms_norm" => Ops.RmsNorm(x[0], x[1], c.Double("eps")),
            "layer_norm" => Ops.LayerNorm(x[0], x[1], x[2], c.Double("eps")),
            "embedding" => Ops.Embedding(x[0], x[1]),
            "index_select" => x[0].IndexSelect(c.Int("axis"), x[1]),
            "scatter_add" => Ops.ScatterAdd(x[0], c.Int("axis"), x[1], x[2]),
            "concat" => Ops.Concat(x, c.Int("axis")),
            "stack" => Ops.Stack(x, c.Int("axis")),
            "split_second_part" => Ops.Split(x[0], c.IntArray("sizes")!, c.Int("axis"))[c.Int("part")],
            "pad_constant" => x[0].Pad([c.IntArray("pad_dim0")![0], c.IntArray("pad_last_dim")![0]],
                                       [c.IntArray("pad_dim0")![1], c.IntArray("pad_last_dim")![1]], c.Double("value")),
            "transpose_reshape" => x[0].Transpose(0, 2).Reshape(4, 6),
            "slice_step" => x[0].Slice(c.Int("axis"), c.Int("start"), c.Int("stop"), c.Int("step")),
            "expand" => x[0].Expand(c.Output.Shape),
            "causal_attention" or "causal_attention_gqa" => Attention(x[0], x[1], x[2]),
            "rope" => x[0].Rope(c.Double("theta"), interleaved: c.Attrs.GetProperty("style").GetString() == "interleaved"),
            "cross_entropy" or "cross_entropy_smoothed" => Ops.CrossEntropy(x[0], x[1], c.Int("ignore_index"), c.Double("label_smoothing")),
            "lora_linear" => x[0].MatMul(x[1]) + x[0].MatMul(x[2]).MatMul(x[3]) * c.Double("scale"),
            _ => throw new NotSupportedException($"reference op '{c.Op}' has no Kiln spelling"),
        };
    }

    /// <summary>softmax(causal(q·kᵀ/√d))·v with kv heads repeated for grouped-query attention.</summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v)
    {
        int b = q.Dim(0), hq = q.Dim(1), s = q.Dim(2), d = q.Dim(3), hk = k.Dim(1);
        if (hq != hk)
        {
            int rep = hq / hk;
            k = k.Unsqueeze(2).Expand(b, hk, rep, s, d).Reshape(b, hq, s, d);
            v = v.Unsqueeze(2).Expand(b, hk, rep, s, d).Reshape(b, hq, s, d);
        }
        var scores = q.MatMul(k.T) * (1 / Math.Sqrt(d));
        return Ops.CausalMask(scores).Softmax(-1).MatMul(v);
    }
}
