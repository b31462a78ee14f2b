using Kiln.LoRA.Models;
using Kiln.LoRA.Modules;

namespace Kiln.LoRA.Training;

/// <summary>How the trainer steps (the optimizer's and the loss's knobs; data and schedule live elsewhere).</summary>
public sealed record TrainerOptions
{
    public AdamWOptions AdamW { get; init; } = new();
    /// <summary>Global-norm gradient clipping threshold; null or ≤ 0 disables clipping.</summary>
    public double? ClipNorm { get; init; } = 1.0;
    /// <summary>Micro-batches per optimizer step; gradients are averaged over them.</summary>
    public int GradAccumulation { get; init; } = 1;
    public double LabelSmoothing { get; init; }
}

/// <summary>One micro-batch: token ids and next-token labels (B·T each, row-major; -100 = not trained on).</summary>
public sealed record TokenBatch(int[] Inputs, int[] Labels, int BatchSize, int SeqLen)
{
    public int TrainedTokens => Labels.Count(l => l != Trainer.IgnoreIndex);

    public void Validate(int vocab)
    {
        if (Inputs.Length != BatchSize * SeqLen || Labels.Length != Inputs.Length)
            throw new ArgumentException($"batch of {BatchSize}×{SeqLen} needs {BatchSize * SeqLen} inputs and labels, got {Inputs.Length} and {Labels.Length}");
        foreach (var id in Inputs)
            if ((uint)id >= (uint)vocab) throw new ArgumentException($"token id {id} is outside the model's vocabulary (0..{vocab - 1})");
        foreach (var id in Labels)
            if (id != Trainer.IgnoreIndex && (uint)id >= (uint)vocab) throw new ArgumentException($"label {id} is outside the model's vocabulary (0..{vocab - 1})");
    }
}

/// <summary>What a finished optimizer step reports.</summary>
public sealed record StepResult(long Step, double Loss, double LearningRate, double GradNorm, int Tokens);

/// <summary>
/// Trains the model's trainable parameters (the LoRA weights after <c>Lora.Apply</c>). A step — forward,
/// backward, clipping and the AdamW update — is built as one graph and evaluated with one <c>Eval</c>, so
/// the optimizer fuses across it and every later step with the same shapes reuses its cached plan. With
/// gradient accumulation the first micro-batches evaluate loss and summed gradients, the last one also the update.
/// </summary>
public sealed class Trainer
{
    public const int IgnoreIndex = -100;

    private readonly CausalLM _model;
    private readonly Parameter[] _params;
    private readonly TrainerOptions _o;
    private readonly List<double> _microLosses = [];
    private Tensor[]? _accumulated;
    private int _micro, _tokens;

    public Trainer(CausalLM model, TrainerOptions? options = null)
    {
        _model = model;
        _o = options ?? new TrainerOptions();
        if (_o.GradAccumulation < 1) throw new ArgumentOutOfRangeException(nameof(options), $"gradient accumulation must be at least 1, got {_o.GradAccumulation}");
        _params = model.NamedParameters().Select(p => p.Value).Where(p => p.Trainable).ToArray();
        if (_params.Length == 0) throw new InvalidOperationException("the model has no trainable parameters (apply LoRA first: Lora.Apply(model, config))");
        Optimizer = new AdamW(_params.Select(p => p.Value).ToArray(), _o.AdamW);
    }

    public AdamW Optimizer { get; }
    public TrainerOptions Options => _o;
    public IReadOnlyList<Parameter> Parameters => _params;

    /// <summary>Optimizer steps taken.</summary>
    public long Step => Optimizer.Step;

    /// <summary>
    /// Feeds one micro-batch. Returns the step's result when it completed an optimizer step (every
    /// GradAccumulation-th call), else null. <paramref name="learningRate"/> is the rate for this step.
    /// </summary>
    public StepResult? Feed(TokenBatch batch, double learningRate)
    {
        batch.Validate(_model.Config.VocabSize);
        SetDropoutSalt(Step * _o.GradAccumulation + _micro);
        _model.SetTraining(true);
        var loss = Loss(batch);
        _model.SetTraining(false);
        var grads = Autograd.Grad(loss, _params.Select(p => p.Value).ToArray());
        if (_accumulated is not null) grads = grads.Zip(_accumulated, (g, a) => a + g).ToArray();
        _micro++;
        _tokens += batch.TrainedTokens;
        if (_micro < _o.GradAccumulation)
        {
            Tensor.Eval([loss, .. grads]);
            _microLosses.Add(loss.Item<float>());
            _accumulated = grads.Select(g => g.Detach()).ToArray();
            return null;
        }

        // Accumulated gradients are sums over micro-batches: the mean is sum / k. Scaling (and clipping) is one
        // scalar the update kernel applies, so no scaled copy of every gradient is made.
        double mean = 1.0 / _o.GradAccumulation;
        var norm = Ops.SumOfSquares(grads).Sqrt() * mean;
        var scale = norm.ScalarLike(mean);
        if (_o.ClipNorm is > 0 and var clip)   // min(1, clip / (norm + 1e-6)) as torch.nn.utils.clip_grad_norm_
            scale = Ops.Minimum(norm.ScalarLike(clip) / (norm + 1e-6), norm.ScalarLike(1)) * mean;
        var update = Optimizer.Update(_params.Select(p => p.Value).ToArray(), grads, learningRate, scale);
        Tensor.Eval([loss, norm, .. update.Outputs]);
        var fresh = update.Commit();
        for (int i = 0; i < _params.Length; i++) _params[i].Value = fresh[i];
        _microLosses.Add(loss.Item<float>());
        var result = new StepResult(Step, _microLosses.Average(), learningRate, norm.Item<float>(), _tokens);
        _microLosses.Clear(); _accumulated = null; _micro = 0; _tokens = 0;
        return result;
    }

    /// <summary>Mean next-token loss over the trained (non-ignored) labels of the batches, without updating.</summary>
    public double Evaluate(IEnumerable<TokenBatch> batches)
    {
        double sum = 0; long count = 0;
        foreach (var b in batches)
        {
            b.Validate(_model.Config.VocabSize);
            int n = b.TrainedTokens;
            if (n == 0) continue;
            var smoothingOff = Ops.CrossEntropy(Logits(b), Tensor.FromArray(b.Labels, [b.Labels.Length], _model.Device), IgnoreIndex);
            sum += smoothingOff.Item<float>() * n; count += n;
        }
        return count == 0 ? double.NaN : sum / count;
    }

    private Tensor Loss(TokenBatch b) =>
        Ops.CrossEntropy(Logits(b), Tensor.FromArray(b.Labels, [b.Labels.Length], _model.Device), IgnoreIndex, _o.LabelSmoothing);

    /// <summary>Logits as (tokens, vocab) in fp32: a half-precision model's are widened for the loss (as Hugging Face
    /// does), so the log-softmax over the vocabulary and the loss are not rounded to 8 or 11 bits.</summary>
    private Tensor Logits(TokenBatch b)
    {
        var logits = _model.Forward(Tensor.FromArray(b.Inputs, [b.BatchSize, b.SeqLen], _model.Device)).Reshape(-1, _model.Config.VocabSize);
        return logits.DType == DType.Float32 ? logits : logits.Cast(DType.Float32);
    }

    private void SetDropoutSalt(long salt)
    {
        foreach (var m in _model.NamedModules())
            if (m.Value is LoraLinear l) l.DropoutSalt = salt;
    }
}
