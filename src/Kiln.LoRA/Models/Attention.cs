using Kiln.LoRA.Modules;

namespace Kiln.LoRA.Models;

/// <summary>
/// Multi-head causal self-attention with grouped key/value heads (GQA), RoPE, an optional KV cache and an
/// optional padding mask. Query heads are grouped per kv head as (B, kv_heads, group, T, head_dim) so keys
/// and values are broadcast to their group without being copied.
/// </summary>
public sealed class Attention : Module
{
    private readonly ModelConfig _c;

    internal Attention(ModelConfig c, WeightSource w, string prefix)
    {
        _c = c;
        Q = Register("q_proj", w.Linear($"{prefix}.q_proj", c.QkvBias));
        K = Register("k_proj", w.Linear($"{prefix}.k_proj", c.QkvBias));
        V = Register("v_proj", w.Linear($"{prefix}.v_proj", c.QkvBias));
        O = Register("o_proj", w.Linear($"{prefix}.o_proj", c.OutputBias));
        w.Expect($"{prefix}.q_proj.weight", Q.Weight, c.Heads * c.HeadDim, c.HiddenSize);
        w.Expect($"{prefix}.k_proj.weight", K.Weight, c.KvDim, c.HiddenSize);
        w.Expect($"{prefix}.v_proj.weight", V.Weight, c.KvDim, c.HiddenSize);
        w.Expect($"{prefix}.o_proj.weight", O.Weight, c.HiddenSize, c.Heads * c.HeadDim);
    }

    public Linear Q { get; private set; }
    public Linear K { get; private set; }
    public Linear V { get; private set; }
    public Linear O { get; private set; }

    protected override void OnChildReplaced(string name, Module replacement)
    {
        var l = (Linear)replacement;
        switch (name) { case "q_proj": Q = l; break; case "k_proj": K = l; break; case "v_proj": V = l; break; case "o_proj": O = l; break; }
    }

    internal Tensor Forward(Tensor x, ForwardContext ctx, int layer)
    {
        int b = x.Shape[0], t = x.Shape[1], h = _c.Heads, kvh = _c.KvHeads, hd = _c.HeadDim, group = h / kvh;
        var q = Q.Forward(x).Reshape(b, t, h, hd).Permute(0, 2, 1, 3);
        var k = K.Forward(x).Reshape(b, t, kvh, hd).Permute(0, 2, 1, 3);
        var v = V.Forward(x).Reshape(b, t, kvh, hd).Permute(0, 2, 1, 3);
        q = ctx.Rotary.Apply(q, ctx.Positions);
        k = ctx.Rotary.Apply(k, ctx.Positions);
        Tensor? valid = null;
        if (ctx.Cache is { } cache) (k, v, valid) = cache.Append(layer, k, v);
        int s = k.Shape[2];

        var qg = q.Reshape(b, kvh, group, t, hd);
        Tensor o;   // (b, kvh, group, t, hd)
        if (ctx.PaddingBias is null)
            o = Ops.ScaledDotProductAttention(qg, k.Unsqueeze(2), v.Unsqueeze(2), causal: t > 1, validKeys: valid);   // one fused op, no (t, s) scores
        else
        {
            var scores = qg.MatMul(k.Unsqueeze(2).T) * (1 / Math.Sqrt(hd));                   // (b, kvh, group, t, s)
            if (t > 1) scores = scores.Triangle(lower: true, diagonal: s - t, fill: double.NegativeInfinity);
            o = (scores + ctx.PaddingBias).Softmax(-1).MatMul(v.Unsqueeze(2));                 // padding bias (b, 1, 1, 1, s)
        }
        return O.Forward(o.Reshape(b, h, t, hd).Permute(0, 2, 1, 3).Reshape(b, t, h * hd));
    }
}

/// <summary>SwiGLU feed-forward: down(silu(gate(x)) · up(x)).</summary>
public sealed class Mlp : Module
{
    internal Mlp(ModelConfig c, WeightSource w, string prefix)
    {
        Gate = Register("gate_proj", w.Linear($"{prefix}.gate_proj", c.MlpBias));
        Up = Register("up_proj", w.Linear($"{prefix}.up_proj", c.MlpBias));
        Down = Register("down_proj", w.Linear($"{prefix}.down_proj", c.MlpBias));
        w.Expect($"{prefix}.gate_proj.weight", Gate.Weight, c.IntermediateSize, c.HiddenSize);
        w.Expect($"{prefix}.up_proj.weight", Up.Weight, c.IntermediateSize, c.HiddenSize);
        w.Expect($"{prefix}.down_proj.weight", Down.Weight, c.HiddenSize, c.IntermediateSize);
    }

    public Linear Gate { get; private set; }
    public Linear Up { get; private set; }
    public Linear Down { get; private set; }

    protected override void OnChildReplaced(string name, Module replacement)
    {
        var l = (Linear)replacement;
        switch (name) { case "gate_proj": Gate = l; break; case "up_proj": Up = l; break; case "down_proj": Down = l; break; }
    }

    public Tensor Forward(Tensor x) => Down.Forward(Gate.Forward(x).Silu() * Up.Forward(x));
}

/// <summary>Pre-norm decoder block: x + attn(norm(x)), then + mlp(norm(·)).</summary>
public sealed class DecoderLayer : Module
{
    internal DecoderLayer(ModelConfig c, WeightSource w, string prefix)
    {
        InputNorm = Register("input_layernorm", new RmsNorm(w.Get($"{prefix}.input_layernorm.weight", c.HiddenSize), c.RmsNormEps));
        SelfAttn = Register("self_attn", new Attention(c, w, $"{prefix}.self_attn"));
        PostNorm = Register("post_attention_layernorm", new RmsNorm(w.Get($"{prefix}.post_attention_layernorm.weight", c.HiddenSize), c.RmsNormEps));
        Mlp = Register("mlp", new Mlp(c, w, $"{prefix}.mlp"));
    }

    public RmsNorm InputNorm { get; }
    public Attention SelfAttn { get; }
    public RmsNorm PostNorm { get; }
    public Mlp Mlp { get; }

    internal Tensor Forward(Tensor x, ForwardContext ctx, int layer)
    {
        var h = x + SelfAttn.Forward(InputNorm.Forward(x), ctx, layer);
        return h + Mlp.Forward(PostNorm.Forward(h));
    }
}

/// <summary>What every layer of one forward call shares.</summary>
internal sealed record ForwardContext(Rotary Rotary, Positions Positions, KvCache? Cache, Tensor? PaddingBias);
