using Kiln.LoRA.Adapters;
using Kiln.LoRA.Models;
using Kiln.LoRA.Tests.Models;
using Kiln.LoRA.Training;

namespace Kiln.LoRA.Tests.Training;

public class TrainerTests
{
    private static CausalLM LoraModel(int seed = 2)
    {
        var m = RandomModel.Build(RandomModel.Config(hidden: 32, layers: 2, vocab: 40), seed, out _);
        Lora.Apply(m, new LoraConfig { Rank = 4, Alpha = 8, TargetModules = LoraConfig.AllLinear }, seed: 1);
        return m;
    }

    private static TokenBatch Batch(int seed, int b = 2, int t = 8)
    {
        var rng = new Random(seed);
        var seq = Enumerable.Range(0, b * (t + 1)).Select(_ => rng.Next(40)).ToArray();
        var inputs = new int[b * t]; var labels = new int[b * t];
        for (int r = 0; r < b; r++)
            for (int i = 0; i < t; i++) { inputs[r * t + i] = seq[r * (t + 1) + i]; labels[r * t + i] = seq[r * (t + 1) + i + 1]; }
        return new TokenBatch(inputs, labels, b, t);
    }

    private static double[] Train(int steps, TrainerOptions o, double lr = 1e-2)
    {
        var trainer = new Trainer(LoraModel(), o);
        var batch = Batch(1);
        var losses = new List<double>();
        while (losses.Count < steps)
            if (trainer.Feed(batch, lr) is { } r) losses.Add(r.Loss);
        losses.Add(trainer.Evaluate([batch]));
        return [.. losses];
    }

    [Fact]
    public void LossFallsBelowHalfOnAFixedBatchAndIsDeterministic()
    {
        var a = Train(40, new TrainerOptions());
        var b = Train(40, new TrainerOptions());
        Assert.Equal(a, b);
        Assert.True(a[^1] < 0.5 * a[0], $"loss {a[0]:F4} -> {a[^1]:F4} did not halve");
    }

    [Fact]
    public void AccumulatingTwoHalvesEqualsOneFullBatch()
    {
        var full = Batch(5, b: 2);
        var half1 = new TokenBatch(full.Inputs[..8], full.Labels[..8], 1, 8);
        var half2 = new TokenBatch(full.Inputs[8..], full.Labels[8..], 1, 8);
        var one = new Trainer(LoraModel(), new TrainerOptions { ClipNorm = null });
        var two = new Trainer(LoraModel(), new TrainerOptions { ClipNorm = null, GradAccumulation = 2 });
        var r1 = one.Feed(full, 1e-2)!;
        Assert.Null(two.Feed(half1, 1e-2));
        var r2 = two.Feed(half2, 1e-2)!;
        Assert.Equal(r1.Loss, r2.Loss, 5);
        Assert.Equal(r1.GradNorm, r2.GradNorm, 4);
        for (int i = 0; i < one.Parameters.Count; i++)
        {
            var x = one.Parameters[i].Value.ToArray<float>(); var y = two.Parameters[i].Value.ToArray<float>();
            for (int j = 0; j < x.Length; j++) Assert.True(Math.Abs(x[j] - y[j]) < 1e-5, $"param {i}[{j}]: {x[j]} vs {y[j]}");
        }
    }

    [Fact]
    public void ClippingScalesTheUpdateToTheThreshold()
    {
        // With a tiny threshold Adam's first step is unchanged (scale-invariant) but the reported norm is the
        // unclipped one; check that the norm equals the naive norm of autograd's gradients.
        var m = LoraModel();
        var batch = Batch(3);
        var ps = m.TrainableParameters().Select(p => p.Value).ToArray();
        var loss = Ops.CrossEntropy(m.Forward(Tensor.FromArray(batch.Inputs, [2, 8])).Reshape(-1, 40), Tensor.FromArray(batch.Labels, [16]));
        double naive = Math.Sqrt(Autograd.Grad(loss, ps).Sum(g => g.ToArray<float>().Sum(x => (double)x * x)));
        var r = new Trainer(m, new TrainerOptions { ClipNorm = 1e-3 }).Feed(batch, 1e-2)!;
        Assert.Equal(naive, r.GradNorm, 4);
    }

    [Fact]
    public void BadBatchesAreRejectedWithTheReason()
    {
        var trainer = new Trainer(LoraModel(), new TrainerOptions());
        var e = Assert.Throws<ArgumentException>(() => trainer.Feed(new TokenBatch([1, 2, 99], [2, 3, 4], 1, 3), 1e-3));
        Assert.Contains("99", e.Message);
        Assert.Throws<ArgumentException>(() => trainer.Feed(new TokenBatch([1, 2], [2, 3, 4], 1, 3), 1e-3));
    }
}

/// <summary>Counts plan-cache misses, so it runs alone (other tests' graphs would miss meanwhile).</summary>
[CollectionDefinition(nameof(PlanCountingCollection), DisableParallelization = true)]
public sealed class PlanCountingCollection;

[Collection(nameof(PlanCountingCollection))]
public class TrainerPlanTests
{
    [Fact]
    public void EveryStepAfterTheFirstReusesTheCachedPlan()
    {
        var m = RandomModel.Build(RandomModel.Config(), 2, out _);
        Lora.Apply(m, new LoraConfig { Rank = 4, TargetModules = LoraConfig.AllLinear });
        var trainer = new Trainer(m, new TrainerOptions());
        var rng = new Random(1);
        TokenBatch Next() => new(Enumerable.Range(0, 16).Select(_ => rng.Next(40)).ToArray(), Enumerable.Range(0, 16).Select(_ => rng.Next(40)).ToArray(), 2, 8);
        trainer.Feed(Next(), 1e-2);
        long before = Kiln.Runtime.PlanCache.Misses;
        for (int i = 0; i < 3; i++) trainer.Feed(Next(), 1e-2 * (i + 1));
        Assert.Equal(before, Kiln.Runtime.PlanCache.Misses);
    }
}

[Collection(nameof(PlanCountingCollection))]
public class GradientCheckpointingTests
{
    [Fact]
    public void SameLossesAndLessActivationMemoryOnTheRealModel()
    {
        var rng = new Random(3);
        var batch = new TokenBatch(Enumerable.Range(0, 512).Select(_ => rng.Next(512)).ToArray(), Enumerable.Range(0, 512).Select(_ => rng.Next(512)).ToArray(), 4, 128);
        (double[] Losses, long Peak) Run(bool checkpointing)
        {
            var m = Kiln.LoRA.Models.Pretrained.Load(TestData.File("models", "stories260K", "stories260K.bin")).Model;
            Lora.Apply(m, new LoraConfig { Rank = 4, TargetModules = LoraConfig.AllLinear }, seed: 1);
            m.GradientCheckpointing = checkpointing;
            var t = new Trainer(m, new TrainerOptions());
            var losses = Enumerable.Range(0, 3).Select(_ => t.Feed(batch, 1e-2)!.Loss).ToArray();
            return (losses, Kiln.Runtime.Evaluator.LastPeakBytes);
        }
        var plain = Run(false);
        var ckpt = Run(true);
        for (int i = 0; i < 3; i++) Assert.Equal(plain.Losses[i], ckpt.Losses[i], 5);
        Assert.True(ckpt.Peak < plain.Peak * 0.8, $"peak intermediates {ckpt.Peak} B with checkpointing vs {plain.Peak} B without");
    }
}

[Collection(nameof(PlanCountingCollection))]
public class DecodePlanTests
{
    [Fact]
    public void DecodeStepsReuseOnePlan()
    {
        var m = RandomModel.Build(RandomModel.Config(), 3, out _);
        var gen = new Kiln.LoRA.Generation.Generator(m, new Kiln.LoRA.Tests.Generation.LetterTokenizer());
        var o = new Kiln.LoRA.Generation.SamplingOptions { MaxTokens = 20, StopTokens = [] };
        using var e = gen.GenerateIds([1, 5, 6], o).GetEnumerator();
        for (int i = 0; i < 3; i++) Assert.True(e.MoveNext());   // prefill + first decode steps (new plans)
        long before = Kiln.Runtime.PlanCache.Misses;
        for (int i = 0; i < 15; i++) Assert.True(e.MoveNext());
        Assert.Equal(before, Kiln.Runtime.PlanCache.Misses);
    }
}
