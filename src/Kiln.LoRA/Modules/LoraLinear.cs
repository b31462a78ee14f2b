namespace Kiln.LoRA.Modules;

/// <summary>How a LoRA layer is shaped and initialised (PEFT's LoraConfig fields).</summary>
public sealed record LoraOptions(int Rank = 8, double Alpha = 16, double Dropout = 0, bool UseRsLora = false)
{
    /// <summary>alpha / r, or alpha / √r with rsLoRA.</summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    public void Validate()
    {
        if (Rank < 1) throw new ArgumentOutOfRangeException(nameof(Rank), $"LoRA rank must be at least 1, got {Rank}");
        if (Dropout is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(Dropout), $"LoRA dropout must be in [0, 1), got {Dropout}");
        if (!double.IsFinite(Alpha)) throw new ArgumentOutOfRangeException(nameof(Alpha), $"LoRA alpha must be finite, got {Alpha}");
    }
}

/// <summary>
/// A frozen Linear plus a trainable low-rank update: y = x·Wᵀ + b + s·dropout(x)·Aᵀ·Bᵀ with A (r, in) and B
/// (out, r) stored as PEFT stores them, s = alpha/r (or alpha/√r). A starts as PEFT's kaiming-uniform
/// (bound 1/√in), B at zero, so a fresh adapter leaves the model unchanged. Parameter names are
/// "weight", "bias", "lora_A.weight", "lora_B.weight", matching PEFT's adapter keys.
/// </summary>
public sealed class LoraLinear : Linear
{
    private readonly Holder _a, _b;

    public LoraLinear(Linear baseLayer, LoraOptions options, int seed)
        : base(baseLayer.Weight.Value, baseLayer.Bias?.Value)
    {
        options.Validate();
        Options = options;
        int inF = baseLayer.InFeatures, outF = baseLayer.OutFeatures;
        double bound = 1 / Math.Sqrt(inF);   // kaiming_uniform_(a=√5) on (r, in) gives U(-1/√in, 1/√in)
        var device = baseLayer.Weight.Value.Device;
        _a = Register("lora_A", new Holder(Tensor.RandomUniform([options.Rank, inF], seed, -bound, bound, device: device).Eval()));
        _b = Register("lora_B", new Holder(Tensor.FromArray(new float[outF * options.Rank], [outF, options.Rank], device)));   // dense zeros (a fill would be a broadcast view)
        DropoutSeed = seed;
    }

    public LoraOptions Options { get; }
    public Parameter A => _a.Weight;
    public Parameter B => _b.Weight;
    public bool Merged { get; private set; }
    public int DropoutSeed { get; set; }

    /// <summary>Varies the dropout mask between calls; the trainer sets it from the step so that a resumed
    /// run draws the same masks as an uninterrupted one.</summary>
    public long DropoutSalt { get; set; }

    public override Tensor Forward(Tensor x)
    {
        var y = base.Forward(x);
        if (Merged) return y;
        var h = Training && Options.Dropout > 0 ? Dropout(x) : x;
        // A and B are fp32 master weights; a half-precision model (CausalLM.CastFrozenWeights) computes in its dtype.
        return y + h.MatMul(In(A.Value, h.DType).T).MatMul(In(B.Value, h.DType).T) * Options.Scaling;
    }

    private static Tensor In(Tensor t, DType dtype) => t.DType == dtype ? t : t.Cast(dtype);

    /// <summary>s·B·A in fp32, in W's dtype.</summary>
    private Tensor Delta() => In((B.Value.MatMul(A.Value) * Options.Scaling), Weight.Value.DType);

    /// <summary>Folds s·B·A into W (inference without the extra products). Undo with <see cref="Unmerge"/>.</summary>
    public void Merge()
    {
        if (Merged) return;
        Weight.Value = (Weight.Value + Delta()).Detach();
        Merged = true;
    }

    public void Unmerge()
    {
        if (!Merged) return;
        Weight.Value = (Weight.Value - Delta()).Detach();
        Merged = false;
    }

    /// <summary>Inverted dropout with a host-made mask: the mask is a data leaf, so the step's graph keeps
    /// one structure (and one cached plan) while the mask changes every call.</summary>
    private Tensor Dropout(Tensor x)
    {
        double p = Options.Dropout;
        var mask = new float[x.Numel];
        var rng = new SplitMix64(((ulong)(uint)DropoutSeed << 32) ^ (ulong)DropoutSalt);
        float keep = (float)(1 / (1 - p));
        for (int i = 0; i < mask.Length; i++) mask[i] = rng.NextDouble() >= p ? keep : 0f;
        var m = Tensor.FromArray(mask, [.. x.Shape], x.Device);
        return x * In(m, x.DType);
    }

    /// <summary>A sub-module holding one "weight", so names come out as lora_A.weight like PEFT's.</summary>
    private sealed class Holder : Module
    {
        public Holder(Tensor w) { Weight = Register("weight", new Parameter(w, trainable: true)); }
        public Parameter Weight { get; }
    }
}
