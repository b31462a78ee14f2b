// Mixed-precision LoRA training (CausalLM.CastFrozenWeights): the frozen base in bf16 or fp16, LoRA's A and B and
// the optimizer in fp32. Against the same run in fp32: the same losses to half precision's rounding, the adapter
// still fp32, the base weights stored in the half dtype.
using Kiln.LoRA.Adapters;
using Kiln.LoRA.Models;
using Kiln.LoRA.Training;

namespace Kiln.LoRA.Tests.Training;

public class HalfPrecisionTrainingTests
{
    private static (CausalLM Model, double[] Losses) Train(DType dtype, int steps = 6)
    {
        var m = Pretrained.Load(TestData.File("models", "stories260K", "stories260K.bin")).Model;
        Lora.Apply(m, new LoraConfig { Rank = 4, Alpha = 8, TargetModules = LoraConfig.AllLinear, Dropout = 0.1 }, seed: 1);
        m.CastFrozenWeights(dtype);
        var trainer = new Trainer(m, new TrainerOptions());
        var rng = new Random(3);
        var seq = Enumerable.Range(0, 2 * 33).Select(_ => rng.Next(1, 512)).ToArray();
        var inputs = new int[64]; var labels = new int[64];
        for (int r = 0; r < 2; r++)
            for (int i = 0; i < 32; i++) { inputs[r * 32 + i] = seq[r * 33 + i]; labels[r * 32 + i] = seq[r * 33 + i + 1]; }
        var batch = new TokenBatch(inputs, labels, 2, 32);
        var losses = new List<double>();
        while (losses.Count < steps)
            if (trainer.Feed(batch, 5e-3) is { } s) losses.Add(s.Loss);
        losses.Add(trainer.Evaluate([batch]));
        return (m, [.. losses]);
    }

    [Theory]
    [InlineData(DType.BFloat16, 1e-2)]
    [InlineData(DType.Float16, 2e-3)]
    public void TheLossesFollowTheFp32RunAndTheAdapterStaysFp32(DType dtype, double tol)
    {
        var (_, reference) = Train(DType.Float32);
        var (model, half) = Train(dtype);
        Console.WriteLine($"[{dtype}] losses {string.Join(", ", half.Select(l => l.ToString("F5")))}; fp32 {string.Join(", ", reference.Select(l => l.ToString("F5")))}");
        for (int i = 0; i < reference.Length; i++)
            Assert.True(Math.Abs(half[i] - reference[i]) <= tol * reference[i], $"{dtype} step {i}: loss {half[i]:F5} vs fp32 {reference[i]:F5}");
        Assert.True(half[^1] < half[0], $"{dtype}: loss {half[0]:F4} -> {half[^1]:F4} did not fall");
        foreach (var (name, p) in model.NamedParameters())
            Assert.Equal(p.Trainable ? DType.Float32 : dtype, p.Value.DType);
        Assert.Equal(dtype, model.ComputeDType);
    }

    [Fact]
    public void MergingAnFp32AdapterIntoAHalfBaseKeepsTheBaseDtype()
    {
        var (model, _) = Train(DType.BFloat16, steps: 2);
        var layer = model.NamedModules().Select(m => m.Value).OfType<Kiln.LoRA.Modules.LoraLinear>().First();
        var before = layer.Weight.Value.Cast(DType.Float32).ToArray<float>();
        var delta = (layer.B.Value.MatMul(layer.A.Value) * layer.Options.Scaling).ToArray<float>();
        layer.Merge();
        Assert.Equal(DType.BFloat16, layer.Weight.Value.DType);
        var merged = layer.Weight.Value.Cast(DType.Float32).ToArray<float>();
        for (int i = 0; i < merged.Length; i++)
            Assert.True(Math.Abs(merged[i] - (before[i] + delta[i])) <= 1e-2 * Math.Abs(before[i] + delta[i]) + 1e-3, $"[{i}] {merged[i]} vs {before[i] + delta[i]}");
    }

    [Fact]
    public void OnlyFloatDtypesAModelComputesInAreAccepted()
    {
        var m = Pretrained.Load(TestData.File("models", "stories260K", "stories260K.bin")).Model;
        var e = Assert.Throws<ArgumentException>(() => m.CastFrozenWeights(DType.Int32));
        Assert.Contains("CastFrozenWeights", e.Message);
    }
}
