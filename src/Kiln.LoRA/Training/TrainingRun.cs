using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kiln.LoRA.Adapters;
using Kiln.LoRA.Data;
using Kiln.LoRA.IO;
using Kiln.LoRA.Models;
using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Training;

/// <summary>Everything a LoRA fine-tuning run needs (what `kiln train` exposes as options).</summary>
public sealed record TrainingRunOptions
{
    public required string DataPath { get; init; }
    public required string OutputDir { get; init; }
    public string? ValidationDataPath { get; init; }
    public LoraConfig Lora { get; init; } = new() { TargetModules = LoraConfig.AllLinear };
    public double LearningRate { get; init; } = 1e-3;
    public string Schedule { get; init; } = "cosine";
    public int WarmupSteps { get; init; }
    /// <summary>Optimizer steps; 0 means Epochs passes over the data.</summary>
    public int Steps { get; init; }
    public int Epochs { get; init; } = 1;
    public int BatchSize { get; init; } = 4;
    public int GradAccumulation { get; init; } = 1;
    public int MaxSeq { get; init; } = 128;
    public double? ClipNorm { get; init; } = 1.0;
    public double WeightDecay { get; init; }
    public double LabelSmoothing { get; init; }
    public BatchMode Batching { get; init; } = BatchMode.Packing;
    public bool TrainOnPrompt { get; init; }
    /// <summary>Recompute decoder layers in the backward pass instead of storing their activations.</summary>
    public bool GradientCheckpointing { get; init; }
    /// <summary>Validation loss every N steps (0: only at the end when validation data is given).</summary>
    public int ValidateEvery { get; init; }
    /// <summary>Checkpoint every N steps (0: none besides the final adapter).</summary>
    public int SaveEvery { get; init; }
    /// <summary>A checkpoint folder to continue from ("latest" = the newest under OutputDir).</summary>
    public string? Resume { get; init; }
    public ulong Seed { get; init; }

    public void Validate()
    {
        if (LearningRate <= 0 || !double.IsFinite(LearningRate)) throw new ArgumentException($"learning rate must be positive, got {LearningRate}");
        if (BatchSize < 1) throw new ArgumentException($"batch size must be at least 1, got {BatchSize}");
        if (MaxSeq < 2) throw new ArgumentException($"max sequence length must be at least 2, got {MaxSeq}");
        if (Steps < 0 || Epochs < 1) throw new ArgumentException($"steps must be ≥ 0 and epochs ≥ 1 (got {Steps}, {Epochs})");
        if (GradAccumulation < 1) throw new ArgumentException($"gradient accumulation must be at least 1, got {GradAccumulation}");
        Lora.Options.Validate();
    }
}

/// <summary>Progress of a run, reported after every optimizer step.</summary>
public sealed record TrainingProgress(int Step, int TotalSteps, double Loss, double LearningRate, double TokensPerSecond, TimeSpan Elapsed, double? ValidationLoss);

/// <summary>What a finished run leaves behind.</summary>
public sealed record TrainingSummary(IReadOnlyList<LossPoint> TrainLoss, IReadOnlyList<LossPoint> ValidationLoss, string AdapterDir, string LossCurvePath, double TokensPerSecond);

/// <summary>
/// A LoRA fine-tuning run: data → batches → <see cref="Trainer"/> steps under a learning-rate schedule, with
/// validation, checkpoints (adapter, optimizer moments, data position and step, written to a temporary folder
/// and renamed into place) and exact resume. The output folder ends up holding a PEFT adapter
/// (adapter_model.safetensors + adapter_config.json), loss_curve.svg and trainer_state.json.
/// </summary>
public sealed class TrainingRun
{
    private readonly CausalLM _model;
    private readonly ITokenizer _tokenizer;
    private readonly TrainingRunOptions _o;
    private readonly string? _baseModel;

    public TrainingRun(CausalLM model, ITokenizer tokenizer, TrainingRunOptions options, string? baseModelPath = null)
    {
        options.Validate();
        (_model, _tokenizer, _o, _baseModel) = (model, tokenizer, options, baseModelPath);
    }

    public TrainingSummary Run(Action<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        var template = ChatTemplates.For(_model.Config.ModelType, _tokenizer);
        var examples = new ExampleTokenizer(_tokenizer, template, _o.TrainOnPrompt);
        int pad = _tokenizer.EosId ?? 0;
        var loader = new DataLoader(examples.TokenizeFile(_o.DataPath), new BatchOptions(_o.BatchSize, _o.MaxSeq, _o.Batching, _o.Seed), pad);
        DataLoader? validation = _o.ValidationDataPath is null ? null
            : new DataLoader(examples.TokenizeFile(_o.ValidationDataPath), new BatchOptions(_o.BatchSize, _o.MaxSeq, _o.Batching, _o.Seed, Shuffle: false), pad);
        int totalSteps = _o.Steps > 0 ? _o.Steps : Math.Max(1, _o.Epochs * loader.BatchesPerEpoch / _o.GradAccumulation);
        var schedule = LrSchedule.Parse(_o.Schedule, _o.LearningRate, _o.WarmupSteps, totalSteps).Validated();

        string? resumeDir = _o.Resume is null ? null : ResolveResume();
        if (Lora.Layers(_model).Count == 0) Lora.Apply(_model, _o.Lora, seed: (int)(_o.Seed % int.MaxValue));
        if (resumeDir is not null)
        {
            PeftAdapter.Apply(_model, PeftAdapter.Load(resumeDir));
            foreach (var p in _model.NamedParameters()) p.Value.Trainable = p.Key.Contains(".lora_A.", StringComparison.Ordinal) || p.Key.Contains(".lora_B.", StringComparison.Ordinal);
        }
        var trainer = new Trainer(_model, new TrainerOptions
        {
            AdamW = new AdamWOptions(WeightDecay: _o.WeightDecay),
            ClipNorm = _o.ClipNorm,
            GradAccumulation = _o.GradAccumulation,
            LabelSmoothing = _o.LabelSmoothing,
        });
        _model.GradientCheckpointing = _o.GradientCheckpointing;
        var trainLoss = new List<LossPoint>(); var valLoss = new List<LossPoint>();
        if (resumeDir is not null) Restore(resumeDir, trainer, loader, trainLoss, valLoss);

        Directory.CreateDirectory(_o.OutputDir);
        var clock = Stopwatch.StartNew();
        long tokens = 0;
        while (trainer.Step < totalSteps)
        {
            cancel.ThrowIfCancellationRequested();
            var b = loader.Next();
            var r = trainer.Feed(new TokenBatch(b.Inputs, b.Labels, b.Rows, b.SeqLen), schedule.LearningRate((int)trainer.Step));
            if (r is null) continue;
            tokens += r.Tokens;
            int step = (int)r.Step;
            trainLoss.Add(new LossPoint(step, r.Loss));
            double? v = null;
            if (validation is not null && ((_o.ValidateEvery > 0 && step % _o.ValidateEvery == 0) || step == totalSteps))
            {
                v = trainer.Evaluate(validation.EpochBatches(0).Select(x => new TokenBatch(x.Inputs, x.Labels, x.Rows, x.SeqLen)));
                valLoss.Add(new LossPoint(step, v.Value));
            }
            if (_o.SaveEvery > 0 && step % _o.SaveEvery == 0 && step < totalSteps) SaveCheckpoint(trainer, loader, trainLoss, valLoss);
            progress?.Invoke(new TrainingProgress(step, totalSteps, r.Loss, r.LearningRate, tokens / Math.Max(clock.Elapsed.TotalSeconds, 1e-9), clock.Elapsed, v));
        }

        PeftAdapter.Save(_model, _o.OutputDir, _o.Lora, _baseModel);
        string curve = Path.Combine(_o.OutputDir, "loss_curve.svg");
        LossCurve.WriteSvg(curve, trainLoss, valLoss.Count > 0 ? valLoss : null, "kiln train: loss");
        AtomicFile.WriteAllText(Path.Combine(_o.OutputDir, "trainer_state.json"), State(trainer, loader, trainLoss, valLoss).ToJsonString(Indented));
        return new TrainingSummary(trainLoss, valLoss, _o.OutputDir, curve, tokens / Math.Max(clock.Elapsed.TotalSeconds, 1e-9));
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private JsonObject State(Trainer t, DataLoader loader, List<LossPoint> train, List<LossPoint> val) => new()
    {
        ["step"] = t.Step,
        ["data_epoch"] = loader.State.Epoch,
        ["data_index"] = loader.State.Index,
        ["seed"] = _o.Seed,
        ["train_loss"] = new JsonArray(train.Select(p => (JsonNode)new JsonArray(p.Step, p.Loss)).ToArray()),
        ["validation_loss"] = new JsonArray(val.Select(p => (JsonNode)new JsonArray(p.Step, p.Loss)).ToArray()),
    };

    /// <summary>checkpoint-NNNNNN/ with the adapter, optimizer.safetensors and trainer_state.json, made in a
    /// temporary folder and renamed, so a crash never leaves a half checkpoint under the final name.</summary>
    private void SaveCheckpoint(Trainer t, DataLoader loader, List<LossPoint> train, List<LossPoint> val)
    {
        string final = Path.Combine(_o.OutputDir, $"checkpoint-{t.Step.ToString("D6", CultureInfo.InvariantCulture)}");
        string tmp = final + ".tmp";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        Directory.CreateDirectory(tmp);
        PeftAdapter.Save(_model, tmp, _o.Lora, _baseModel);
        var names = _model.NamedParameters().Where(p => p.Value.Trainable).Select(p => p.Key).ToArray();
        var moments = names.SelectMany((n, i) => new[]
        {
            new KeyValuePair<string, Tensor>($"{n}.exp_avg", t.Optimizer.M[i]),
            new KeyValuePair<string, Tensor>($"{n}.exp_avg_sq", t.Optimizer.V[i]),
        });
        Safetensors.Save(Path.Combine(tmp, "optimizer.safetensors"), moments);
        AtomicFile.WriteAllText(Path.Combine(tmp, "trainer_state.json"), State(t, loader, train, val).ToJsonString(Indented));
        if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
        Directory.Move(tmp, final);
    }

    private string ResolveResume()
    {
        string r = _o.Resume!;
        if (r == "latest")
        {
            var latest = Directory.Exists(_o.OutputDir)
                ? Directory.GetDirectories(_o.OutputDir, "checkpoint-*").Where(d => !d.EndsWith(".tmp", StringComparison.Ordinal)).Order(StringComparer.Ordinal).LastOrDefault()
                : null;
            return latest ?? throw new FileNotFoundException($"--resume latest: no checkpoint-* folder in {_o.OutputDir}");
        }
        return Directory.Exists(r) ? r : throw new FileNotFoundException($"checkpoint folder not found: {r}", r);
    }

    /// <summary>Optimizer moments, step, data position and loss history (the adapter was loaded before the trainer was made).</summary>
    private void Restore(string dir, Trainer t, DataLoader loader, List<LossPoint> train, List<LossPoint> val)
    {
        string statePath = Path.Combine(dir, "trainer_state.json");
        if (!File.Exists(statePath)) throw new FileNotFoundException($"checkpoint {dir} has no trainer_state.json", statePath);
        JsonObject s;
        try { s = JsonNode.Parse(File.ReadAllText(statePath)) as JsonObject ?? throw new InvalidDataException($"{statePath}: expected a JSON object"); }
        catch (JsonException e) { throw new InvalidDataException($"{statePath}: not valid JSON ({e.Message})", e); }
        long step = s["step"]!.GetValue<long>();
        using var opt = SafetensorsFile.Open(Path.Combine(dir, "optimizer.safetensors"));
        var names = _model.NamedParameters().Where(p => p.Value.Trainable).Select(p => p.Key).ToArray();
        var dev = _model.Device;
        var m = names.Select(n => opt.Load($"{n}.exp_avg", DType.Float32).To(dev).Detach()).ToArray();
        var v = names.Select(n => opt.Load($"{n}.exp_avg_sq", DType.Float32).To(dev).Detach()).ToArray();
        t.Optimizer.Restore(step, m, v);
        loader.Restore(new DataState(s["data_epoch"]!.GetValue<int>(), s["data_index"]!.GetValue<int>()));
        foreach (var p in s["train_loss"]!.AsArray()) train.Add(new LossPoint(p![0]!.GetValue<int>(), p[1]!.GetValue<double>()));
        foreach (var p in s["validation_loss"]!.AsArray()) val.Add(new LossPoint(p![0]!.GetValue<int>(), p[1]!.GetValue<double>()));
    }
}
