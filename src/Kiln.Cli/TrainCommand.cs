// `kiln train`: LoRA fine-tuning with a live progress bar, a loss curve and a before/after sample.
using System.CommandLine;
using Kiln.LoRA.Adapters;
using Kiln.LoRA.Data;
using Kiln.LoRA.Generation;
using Kiln.LoRA.Models;
using Kiln.LoRA.Training;
using Spectre.Console;

namespace Kiln.Cli;

internal static class TrainCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model folder or llama2.c .bin checkpoint", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer file or folder (default: beside the model)" };
        var data = new Option<string>("--data") { Description = "training data: .jsonl ({\"text\"}, {\"prompt\",\"completion\"}, {\"messages\"}) or .txt", Required = true };
        var output = new Option<string>("--out") { Description = "output folder for the adapter, checkpoints and loss curve", Required = true };
        var rank = new Option<int>("--rank") { Description = "LoRA rank", DefaultValueFactory = _ => 8 };
        var alpha = new Option<double>("--alpha") { Description = "LoRA alpha (scale = alpha / rank)", DefaultValueFactory = _ => 16 };
        var dropout = new Option<double>("--dropout") { Description = "LoRA dropout", DefaultValueFactory = _ => 0 };
        var targets = new Option<string>("--targets") { Description = "modules to adapt: names (q_proj,v_proj) or all-linear", DefaultValueFactory = _ => "all-linear" };
        var lr = new Option<double>("--lr") { Description = "peak learning rate", DefaultValueFactory = _ => 1e-3 };
        var schedule = new Option<string>("--schedule") { Description = $"learning-rate schedule: {string.Join(", ", LrSchedule.Names)}", DefaultValueFactory = _ => "cosine" };
        var warmup = new Option<int>("--warmup") { Description = "warmup steps", DefaultValueFactory = _ => 0 };
        var steps = new Option<int>("--steps") { Description = "optimizer steps (0: use --epochs)", DefaultValueFactory = _ => 0 };
        var epochs = new Option<int>("--epochs") { Description = "passes over the data when --steps is 0", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch") { Description = "sequences per micro-batch", DefaultValueFactory = _ => 4 };
        var accum = new Option<int>("--grad-accum") { Description = "micro-batches per optimizer step", DefaultValueFactory = _ => 1 };
        var maxSeq = new Option<int>("--max-seq") { Description = "tokens per sequence", DefaultValueFactory = _ => 128 };
        var clip = new Option<double>("--clip") { Description = "gradient global-norm clip (0: off)", DefaultValueFactory = _ => 1.0 };
        var valData = new Option<string?>("--val-data") { Description = "validation data (same formats as --data)" };
        var valEvery = new Option<int>("--val-every") { Description = "validation loss every N steps", DefaultValueFactory = _ => 0 };
        var saveEvery = new Option<int>("--save-every") { Description = "checkpoint every N steps", DefaultValueFactory = _ => 0 };
        var resume = new Option<string?>("--resume") { Description = "checkpoint folder to continue from, or 'latest'" };
        var device = new Option<string>("--device") { Description = "cpu, cuda[:N] (an NVIDIA GPU through the CUDA backend), or auto (the GPU when one is found)", DefaultValueFactory = _ => "cpu" };
        var seed = new Option<ulong>("--seed") { Description = "seed for LoRA init, shuffling and dropout", DefaultValueFactory = _ => 0 };
        var tf32 = new Option<bool>("--tf32") { Description = "on a GPU, let fp32 matrix products use TF32 tensor cores (faster, ~1e-3 relative error; as KILN_TF32=1)" };
        var dtype = new Option<string>("--dtype") { Description = "dtype of the frozen base weights and the computation: fp32, bf16 or fp16 (the LoRA weights and the optimizer stay fp32)", DefaultValueFactory = _ => "fp32" };
        var buckets = new Option<bool>("--buckets") { Description = "length buckets instead of packing" };
        var checkpointing = new Option<bool>("--grad-checkpoint") { Description = "recompute layers in the backward pass to save activation memory" };
        var sample = new Option<string?>("--sample-prompt") { Description = "after training, generate from this prompt with and without the adapter" };
        var sampleTokens = new Option<int>("--sample-tokens") { Description = "tokens to generate for the sample", DefaultValueFactory = _ => 60 };

        var cmd = new Command("train", "LoRA fine-tune a model on text or JSONL data")
        {
            model, tokenizer, data, output, rank, alpha, dropout, targets, lr, schedule, warmup, steps, epochs, batch, accum,
            maxSeq, clip, valData, valEvery, saveEvery, resume, device, tf32, dtype, seed, buckets, checkpointing, sample, sampleTokens,
        };
        cmd.SetAction(r => CliErrors.Run(r.GetValue(verbose), () =>
        {
            var dev = ResolveDevice(r.GetValue(device)!);
            if (r.GetValue(tf32)) Settings.AllowTf32 = true;
            var options = new TrainingRunOptions
            {
                DataPath = r.GetValue(data)!, OutputDir = r.GetValue(output)!, ValidationDataPath = r.GetValue(valData),
                Lora = new LoraConfig { Rank = r.GetValue(rank), Alpha = r.GetValue(alpha), Dropout = r.GetValue(dropout), TargetModules = LoraConfig.ParseTargets(r.GetValue(targets)!) },
                LearningRate = r.GetValue(lr), Schedule = r.GetValue(schedule)!, WarmupSteps = r.GetValue(warmup), Steps = r.GetValue(steps),
                Epochs = r.GetValue(epochs), BatchSize = r.GetValue(batch), GradAccumulation = r.GetValue(accum), MaxSeq = r.GetValue(maxSeq),
                ClipNorm = r.GetValue(clip) > 0 ? r.GetValue(clip) : null, ValidateEvery = r.GetValue(valEvery), SaveEvery = r.GetValue(saveEvery),
                Resume = r.GetValue(resume), Seed = r.GetValue(seed), Batching = r.GetValue(buckets) ? BatchMode.LengthBuckets : BatchMode.Packing,
                GradientCheckpointing = r.GetValue(checkpointing),
            };
            return Run(r.GetValue(model)!, r.GetValue(tokenizer), options, r.GetValue(sample), r.GetValue(sampleTokens), dev, ParseDType(r.GetValue(dtype)!));
        }));
        return cmd;
    }

    /// <summary>cpu or cuda[:N]; CUDA registers the backend and fails here, naming why, when it cannot run.</summary>
    internal static Device ResolveDevice(string device)
    {
        if (device.StartsWith("cuda", StringComparison.OrdinalIgnoreCase) || device.Equals("auto", StringComparison.OrdinalIgnoreCase)) Kiln.Cuda.KilnCuda.Register();
        try { return Device.Parse(device); }
        catch (NotSupportedException e) { throw new ArgumentException($"--device {device}: {e.Message}", e); }
    }

    /// <summary>--dtype: fp32, bf16 or fp16 (and their long names).</summary>
    internal static DType ParseDType(string s) => s.Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" or "f32" => DType.Float32,
        "bf16" or "bfloat16" => DType.BFloat16,
        "fp16" or "float16" or "f16" or "half" => DType.Float16,
        _ => throw new ArgumentException($"--dtype {s}: not a dtype to train in (fp32, bf16 or fp16)"),
    };

    private static int Run(string modelPath, string? tokenizerPath, TrainingRunOptions o, string? samplePrompt, int sampleTokens, Device device, DType dtype)
    {
        var loaded = Pretrained.Load(modelPath, tokenizerPath, dtype);   // a half-precision base loads as such (no fp32 copy)
        var tok = loaded.RequireTokenizer();
        var c = loaded.Model.Config;
        AnsiConsole.MarkupLine($"[bold]kiln train[/]: {Markup.Escape(modelPath)} ({c.ModelType}, {c.Layers} layers, hidden {c.HiddenSize}, vocab {c.VocabSize}) on {Markup.Escape(o.DataPath)}");
        AnsiConsole.MarkupLine($"LoRA r={o.Lora.Rank} alpha={o.Lora.Alpha} targets={string.Join(",", o.Lora.TargetModules)}; lr {o.LearningRate} {o.Schedule}, batch {o.BatchSize}×{o.MaxSeq}, device {device}{(device.Kind == DeviceKind.Cpu ? $", {Settings.Threads} threads" : Settings.AllowTf32 ? ", TF32" : "")}{(dtype == DType.Float32 ? "" : $", base weights {dtype.ShortName()} (LoRA and optimizer fp32)")}");

        string? baseSample = samplePrompt is null ? null : Sample(loaded, samplePrompt, sampleTokens);   // on the CPU, before moving
        if (device.Kind != DeviceKind.Cpu) loaded.Model.To(device);
        var run = new TrainingRun(loaded.Model, tok, o, Path.GetFullPath(modelPath));
        TrainingSummary summary;
        if (AnsiConsole.Profile.Capabilities.Interactive)
            summary = AnsiConsole.Progress().AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("training");
                    return run.Run(p =>
                    {
                        task.MaxValue = p.TotalSteps;
                        task.Value = p.Step;
                        task.Description = $"step {p.Step}/{p.TotalSteps} loss {p.Loss:F3} lr {p.LearningRate:0.###e0} {p.TokensPerSecond:F0} tok/s" + (p.ValidationLoss is { } v ? $" val {v:F3}" : "");
                    });
                });
        else
            summary = run.Run(p =>
            {
                int every = Math.Max(1, p.TotalSteps / 10);
                if (p.Step == 1 || p.Step == p.TotalSteps || p.Step % every == 0)
                {
                    double eta = p.Elapsed.TotalSeconds / p.Step * (p.TotalSteps - p.Step);
                    Console.WriteLine($"step {p.Step,5}/{p.TotalSteps}  loss {p.Loss:F4}  lr {p.LearningRate:0.###e0}  {p.TokensPerSecond,7:F0} tok/s  ETA {eta:F0}s" + (p.ValidationLoss is { } v ? $"  val {v:F4}" : ""));
                }
            });

        var losses = summary.TrainLoss.Select(l => l.Loss).ToArray();
        AnsiConsole.MarkupLine($"loss {losses[0]:F3} → {losses[^1]:F3}  {Markup.Escape(LossCurve.Sparkline(losses))}");
        if (summary.ValidationLoss.Count > 0) AnsiConsole.MarkupLine($"validation loss {summary.ValidationLoss[^1].Loss:F3}");
        AnsiConsole.MarkupLine($"{summary.TokensPerSecond:F0} trained tokens/s; adapter → [green]{Markup.Escape(summary.AdapterDir)}[/], loss curve → [green]{Markup.Escape(summary.LossCurvePath)}[/]");
        if (samplePrompt is not null)
        {
            // On the training device, in the model's dtype (the sample before training ran on the CPU, in the same dtype).
            AnsiConsole.MarkupLine("\n[bold]without the adapter[/] (greedy):");
            Console.WriteLine(samplePrompt + baseSample);
            AnsiConsole.MarkupLine("[bold]with the adapter[/] (greedy):");
            Console.WriteLine(samplePrompt + Sample(loaded, samplePrompt, sampleTokens));
        }
        return 0;
    }

    private static string Sample(PretrainedModel m, string prompt, int tokens) =>
        new Generator(m.Model, m.RequireTokenizer()).Generate(prompt, new SamplingOptions { MaxTokens = tokens });
}
