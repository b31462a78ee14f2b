namespace Kiln.LoRA.Generation;

/// <summary>How tokens are picked. Temperature 0 is greedy (first index on ties).</summary>
public sealed record SamplingOptions
{
    public double Temperature { get; init; }
    /// <summary>Nucleus sampling threshold in (0, 1); 1 (or ≤ 0) disables it.</summary>
    public double TopP { get; init; } = 1;
    /// <summary>Keep only the k most likely tokens; 0 disables it.</summary>
    public int TopK { get; init; }
    /// <summary>Drop tokens less likely than MinP × the most likely one; 0 disables it.</summary>
    public double MinP { get; init; }
    /// <summary>Hugging Face's repetition penalty on tokens already in the sequence; 1 disables it.</summary>
    public double RepetitionPenalty { get; init; } = 1;
    public ulong Seed { get; init; } = 42;
    public int MaxTokens { get; init; } = 256;
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Token ids that end generation; null means the tokenizer's and the model config's EOS.</summary>
    public IReadOnlyList<int>? StopTokens { get; init; }

    public void Validate()
    {
        if (Temperature < 0 || !double.IsFinite(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), $"temperature must be ≥ 0, got {Temperature}");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), $"top-k must be ≥ 0, got {TopK}");
        if (MinP is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(MinP), $"min-p must be in [0, 1], got {MinP}");
        if (RepetitionPenalty <= 0) throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), $"repetition penalty must be > 0, got {RepetitionPenalty}");
        if (MaxTokens < 0) throw new ArgumentOutOfRangeException(nameof(MaxTokens), $"max tokens must be ≥ 0, got {MaxTokens}");
    }
}

/// <summary>
/// Picks the next token from logits. Without top-k, min-p and repetition penalty it is exactly llama2.c's
/// run.c sampler (xorshift64* coin, float32 softmax, its multinomial and top-p rules), so seeded outputs
/// can be checked token for token against run.c; the other filters narrow the distribution first.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _o;
    private ulong _state;

    public Sampler(SamplingOptions options)
    {
        options.Validate();
        _o = options;
        _state = options.Seed == 0 ? 0x9E3779B97F4A7C15UL : options.Seed;   // xorshift never leaves 0
    }

    public int Next(ReadOnlySpan<float> logits, IReadOnlyCollection<int>? seen = null)
    {
        var l = logits.ToArray();
        if (_o.RepetitionPenalty != 1 && seen is not null)
            foreach (int id in seen.Distinct())
                if ((uint)id < (uint)l.Length) l[id] = l[id] > 0 ? (float)(l[id] / _o.RepetitionPenalty) : (float)(l[id] * _o.RepetitionPenalty);
        if (_o.Temperature == 0) return ArgMax(l);

        var probs = Softmax(l, (float)_o.Temperature);
        bool filtered = false;
        if (_o.TopK > 0 && _o.TopK < probs.Length)
        {
            // the k most likely, ties broken towards the lower id
            var drop = Enumerable.Range(0, probs.Length).OrderByDescending(i => probs[i]).ThenBy(i => i).Skip(_o.TopK).ToArray();
            foreach (int i in drop) probs[i] = 0;
            filtered = true;
        }
        if (_o.MinP > 0)
        {
            float floor = (float)(_o.MinP * probs.Max());
            for (int i = 0; i < probs.Length; i++) if (probs[i] < floor) probs[i] = 0;
            filtered = true;
        }
        if (filtered)
        {
            float sum = probs.Sum();
            for (int i = 0; i < probs.Length; i++) probs[i] /= sum;
        }
        float coin = Coin();
        return _o.TopP is > 0 and < 1 ? TopP(probs, (float)_o.TopP, coin) : Multinomial(probs, coin);
    }

    private static int ArgMax(float[] l)
    {
        int best = 0;
        for (int i = 1; i < l.Length; i++) if (l[i] > l[best]) best = i;
        return best;
    }

    private static float[] Softmax(float[] l, float temperature)
    {
        var p = new float[l.Length];
        for (int i = 0; i < l.Length; i++) p[i] = l[i] / temperature;
        float max = p.Max(), sum = 0;
        for (int i = 0; i < p.Length; i++) { p[i] = MathF.Exp(p[i] - max); sum += p[i]; }
        for (int i = 0; i < p.Length; i++) p[i] /= sum;
        return p;
    }

    private static int Multinomial(float[] probs, float coin)
    {
        float cdf = 0;
        for (int i = 0; i < probs.Length; i++) { cdf += probs[i]; if (coin < cdf) return i; }
        return probs.Length - 1;
    }

    /// <summary>run.c's sample_topp: candidates above (1−p)/(n−1), sorted, cut after the mass exceeds p.</summary>
    private static int TopP(float[] probs, float topp, float coin)
    {
        float cutoff = (1f - topp) / (probs.Length - 1);
        var cand = Enumerable.Range(0, probs.Length).Where(i => probs[i] >= cutoff)
            .OrderByDescending(i => probs[i]).ThenBy(i => i).ToArray();
        float cum = 0; int last = cand.Length - 1;
        for (int k = 0; k < cand.Length; k++) { cum += probs[cand[k]]; if (cum > topp) { last = k; break; } }
        float r = coin * cum, cdf = 0;
        for (int k = 0; k <= last; k++) { cdf += probs[cand[k]]; if (r < cdf) return cand[k]; }
        return cand[last];
    }

    /// <summary>run.c's random_f32: xorshift64*, top 24 bits of the 32-bit output.</summary>
    private float Coin()
    {
        _state ^= _state >> 12; _state ^= _state << 25; _state ^= _state >> 27;
        uint u = (uint)((_state * 0x2545F4914F6CDD1DUL) >> 32);
        return (u >> 8) / 16777216.0f;
    }
}
