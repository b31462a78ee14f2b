using Kiln.LoRA.Modules;

namespace Kiln.LoRA.Models;

/// <summary>The decoder stack under "model.": embed_tokens, layers.N, norm.</summary>
public sealed class DecoderStack : Module
{
    internal DecoderStack(ModelConfig c, WeightSource w)
    {
        EmbedTokens = Register("embed_tokens", new Embedding(w.Get("model.embed_tokens.weight", c.VocabSize, c.HiddenSize)));
        var list = Register("layers", new ModuleList());
        Layers = Enumerable.Range(0, c.Layers).Select(i => list.Add(new DecoderLayer(c, w, $"model.layers.{i}"))).ToArray();
        Norm = Register("norm", new RmsNorm(w.Get("model.norm.weight", c.HiddenSize), c.RmsNormEps));
    }

    public Embedding EmbedTokens { get; }
    public IReadOnlyList<DecoderLayer> Layers { get; }
    public RmsNorm Norm { get; }
}

/// <summary>Children named "0", "1", … as in a PyTorch ModuleList.</summary>
public sealed class ModuleList : Module
{
    private int _count;

    public T Add<T>(T module) where T : Module => Register((_count++).ToString(System.Globalization.CultureInfo.InvariantCulture), module);
}

/// <summary>
/// A Llama or Qwen2 causal language model (LlamaForCausalLM / Qwen2ForCausalLM): parameter names are the
/// Hugging Face state-dict keys, so weights load by name and LoRA adapters address layers by path.
/// </summary>
public sealed class CausalLM : Module
{
    private readonly Rotary _rotary;

    private CausalLM(ModelConfig c, WeightSource w)
    {
        Config = c;
        Model = Register("model", new DecoderStack(c, w));
        if (!c.TieWordEmbeddings)
            LmHead = Register("lm_head", w.Linear("lm_head", bias: false));
        _rotary = new Rotary(c);
    }

    public ModelConfig Config { get; }
    public DecoderStack Model { get; }

    /// <summary>Where the weights live (and so where the model computes).</summary>
    public Device Device => Model.EmbedTokens.Weight.Value.Device;

    /// <summary>Moves every parameter to <paramref name="device"/> (copies made now); returns this model.</summary>
    public CausalLM To(Device device)
    {
        var moved = NamedParameters().Select(p => p.Value).Where(p => !p.Value.Device.Equals(device)).ToArray();
        var values = moved.Select(p => p.Value.To(device)).ToArray();
        if (values.Length > 0) Tensor.Eval(values);
        for (int i = 0; i < moved.Length; i++) moved[i].Value = values[i].Detach();
        return this;
    }

    /// <summary>
    /// Stores every frozen (non-trainable) floating-point weight in <paramref name="dtype"/> — bf16 or fp16 halves the
    /// memory and traffic of the base model, fp32 restores it — and so makes the model compute in that dtype.
    /// Trainable parameters (LoRA's A and B) stay fp32: they are the optimizer's master weights, and a LoRA layer
    /// casts them to its input's dtype in the forward pass (the gradient flows back through the cast to fp32), as
    /// mixed-precision training does in PyTorch. Returns this model.
    /// </summary>
    public CausalLM CastFrozenWeights(DType dtype)
    {
        RequireComputeDType(dtype, "CausalLM.CastFrozenWeights");
        var cast = NamedParameters().Select(p => p.Value).Where(p => !p.Trainable && p.Value.DType.IsFloat() && p.Value.DType != dtype).ToArray();
        var values = cast.Select(p => p.Value.Cast(dtype)).ToArray();
        if (values.Length > 0) Tensor.Eval(values);
        for (int i = 0; i < cast.Length; i++) cast[i].Value = values[i].Detach();
        return this;
    }

    /// <summary>The dtype the model computes in: its token embedding's.</summary>
    public DType ComputeDType => Model.EmbedTokens.Weight.Value.DType;

    /// <summary>Recompute each decoder layer during the backward pass instead of keeping its activations
    /// (memory for compute; gradients are unchanged). Affects only graphs that are differentiated.</summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>The output projection, or null when it is tied to the token embedding.</summary>
    public Linear? LmHead { get; private set; }

    protected override void OnChildReplaced(string name, Module replacement)
    {
        if (name == "lm_head") LmHead = (Linear)replacement;
    }

    /// <summary>Builds the model from named weights (Hugging Face keys), stored in <paramref name="dtype"/> (fp32, bf16
    /// or fp16); weight names the architecture does not use are returned in <paramref name="unused"/>.</summary>
    public static CausalLM FromWeights(ModelConfig config, IReadOnlyDictionary<string, Tensor> weights, string source, out IReadOnlyList<string> unused,
        DType dtype = DType.Float32)
    {
        RequireComputeDType(dtype, "CausalLM.FromWeights");
        var w = new WeightSource(n => weights.TryGetValue(n, out var t) ? t : null, weights.Keys, source, dtype);
        var m = new CausalLM(config, w);
        unused = w.Unused.Where(n => !n.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
        return m;
    }

    public static CausalLM FromWeights(ModelConfig config, IReadOnlyDictionary<string, Tensor> weights, string source = "weights", DType dtype = DType.Float32) =>
        FromWeights(config, weights, source, out _, dtype);

    internal static void RequireComputeDType(DType dtype, string what)
    {
        if (dtype is not (DType.Float32 or DType.BFloat16 or DType.Float16))
            throw new ArgumentException($"{what}: {dtype} is not a float dtype a model computes in (fp32, bf16, fp16)");
    }

    /// <summary>
    /// Logits (B, T, vocab) for token ids (B, T). With a cache, the ids continue the cached sequence at
    /// position cache.Length. <paramref name="positions"/> overrides the positions (left-padded batches);
    /// <paramref name="attentionMask"/> (B, S) marks real tokens with 1 and padding with 0 over the whole
    /// sequence seen so far (cache included).
    /// </summary>
    public Tensor Forward(Tensor ids, KvCache? cache = null, Positions? positions = null, Tensor? attentionMask = null) =>
        Logits(Hidden(ids, cache, positions, attentionMask));

    /// <summary>The final normalised hidden states (B, T, hidden).</summary>
    public Tensor Hidden(Tensor ids, KvCache? cache = null, Positions? positions = null, Tensor? attentionMask = null)
    {
        if (ids.Rank != 2) throw new ArgumentException($"CausalLM.Forward: ids must be (batch, seq), got shape [{string.Join(", ", ids.Shape)}]");
        if (ids.DType is not (DType.Int32 or DType.Int64)) throw new ArgumentException($"CausalLM.Forward: ids must be integers, got {ids.DType}");
        int b = ids.Shape[0], t = ids.Shape[1], past = cache?.Length ?? 0;
        var device = Device;
        ids = ids.To(device);
        if (cache is { FixedCapacity: true } && attentionMask is not null)
            throw new ArgumentException("CausalLM.Forward: a padding mask needs a growing cache (new KvCache(layers, fixedCapacity: false))");
        // With a fixed-capacity cache the position goes in as data, so decode steps share one plan.
        positions ??= cache is { FixedCapacity: true } ? Positions.AsData(past, device) : new Positions(past);
        cache?.Begin(t, b, Config.KvHeads, Config.HeadDim, device, ComputeDType);
        if (positions.PerRow is { } pr && pr.Length != b * t)
            throw new ArgumentException($"CausalLM.Forward: {pr.Length} positions given for ids of shape [{b}, {t}]");
        Tensor? padBias = null;
        if (attentionMask is not null)
        {
            if (attentionMask.Rank != 2 || attentionMask.Shape[0] != b || attentionMask.Shape[1] != past + t)
                throw new ArgumentException($"CausalLM.Forward: attention mask must be ({b}, {past + t}) (cached + new tokens), got [{string.Join(", ", attentionMask.Shape)}]");
            // 0 where attended, a large finite negative where padded: a padded query row then gets a uniform
            // (finite) distribution instead of NaN, and its garbage never reaches real rows.
            // In the model's dtype (fp16 holds at most 65504: its "large" is -6e4).
            var dt = ComputeDType;
            padBias = ((1 - attentionMask.To(device).Cast(dt)) * (dt == DType.Float16 ? -6e4 : -1e30)).Reshape(b, 1, 1, 1, past + t);
        }
        var ctx = new ForwardContext(_rotary, positions, cache, padBias);
        var x = Model.EmbedTokens.Forward(ids);
        for (int i = 0; i < Model.Layers.Count; i++) x = Model.Layers[i].Forward(GradientCheckpointing ? Ops.Checkpoint(x) : x, ctx, i);
        return Model.Norm.Forward(x);
    }

    public Tensor Logits(Tensor hidden) =>
        LmHead is { } head ? head.Forward(hidden) : hidden.MatMul(Model.EmbedTokens.Weight.Value.T);
}
