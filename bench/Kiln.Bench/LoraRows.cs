// LoRA training and decoding on the real stories260K model, the same work as bench/peers/lora_cpu.py:
// a training step = forward + backward + AdamW on a (4, 128) batch with rank-8 LoRA on every Linear;
// decoding = 200 greedy tokens from BOS with a KV cache. Median of N after warm-up. `lora --device cuda` runs the
// same work with the model on the GPU (bench/peers/lora_cpu.py --device cuda is its peer).
using System.Diagnostics;
using System.Text.Json;
using Kiln.LoRA.Adapters;
using Kiln.LoRA.Generation;
using Kiln.LoRA.Models;
using Kiln.LoRA.Training;

namespace Kiln.Bench;

internal sealed record LoraResult(double TrainUsPerStep, double TrainTokensPerS, double DecodeUsPerToken, double DecodeTokensPerS, bool GreedyMatches);

internal static class LoraRows
{
    public static LoraResult Measure(string repoRoot, Device? device = null)
    {
        // KILN_BENCH_DTYPE=bf16|fp16: the base model in half precision (kiln train --dtype), LoRA and AdamW fp32.
        var dtype = Environment.GetEnvironmentVariable("KILN_BENCH_DTYPE") switch { "bf16" => DType.BFloat16, "fp16" => DType.Float16, _ => DType.Float32 };
        var loaded = Pretrained.Load(Path.Combine(repoRoot, "data/models/stories260K/stories260K.bin"), dtype: dtype);
        var model = loaded.Model;
        if (device is { } d) model.To(d);   // weights resident on the GPU; each step's ids are uploaded as a user's would be
        var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(repoRoot, "data/models/stories260K/reference_logits.json")))
            .RootElement.GetProperty("greedy_from_bos_200").EnumerateArray().Select(e => e.GetInt32()).ToArray();

        // decode first, on the base model (as the peer's default); KILN_BENCH_TRAIN_ONLY=1 skips it (profiling)
        bool trainOnly = Environment.GetEnvironmentVariable("KILN_BENCH_TRAIN_ONLY") == "1";
        var gen = new Generator(model, loaded.RequireTokenizer());
        var o = new SamplingOptions { MaxTokens = 200, StopTokens = [] };
        var ids = trainOnly ? [] : gen.GenerateIds([1], o).ToArray();
        bool matches = reference.SequenceEqual([1, .. ids]);
        var decode = trainOnly ? 0 : Median(7, () => { _ = gen.GenerateIds([1], o).Count(); });

        Lora.Apply(model, new LoraConfig { Rank = 8, Alpha = 16, TargetModules = LoraConfig.AllLinear });
        var trainer = new Trainer(model, new TrainerOptions { ClipNorm = null });
        var rng = new Random(0);
        var batch = new TokenBatch(Enumerable.Range(0, 512).Select(_ => rng.Next(512)).ToArray(), Enumerable.Range(0, 512).Select(_ => rng.Next(512)).ToArray(), 4, 128);
        for (int i = 0; i < 5; i++) trainer.Feed(batch, 1e-3);
        var step = Median(30, () => trainer.Feed(batch, 1e-3));
        return new LoraResult(step, 512 / (step * 1e-6), decode / 200, decode > 0 ? 200 / (decode * 1e-6) : 0, matches);
    }

    private static double Median(int reps, Action a)
    {
        var t = new double[reps];
        for (int i = 0; i < reps; i++) { var sw = Stopwatch.StartNew(); a(); t[i] = sw.Elapsed.TotalMicroseconds; }
        Array.Sort(t);
        return t[reps / 2];
    }
}
