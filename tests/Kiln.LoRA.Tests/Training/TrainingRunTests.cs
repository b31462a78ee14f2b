using Kiln.LoRA.Adapters;
using Kiln.LoRA.Models;
using Kiln.LoRA.Training;

namespace Kiln.LoRA.Tests.Training;

/// <summary>Whole runs on the real stories260K model and a slice of TinyStories (what `kiln train` does).</summary>
public class TrainingRunTests
{
    private static PretrainedModel Load() => Pretrained.Load(TestData.File("models", "stories260K", "stories260K.bin"));

    private static string Data(TestData.TempDir dir)
    {
        string text = File.ReadAllText(TestData.File("corpus", "tinystories", "tinystories_train_head.txt"))[..6000];
        string path = dir.File("train.txt");
        File.WriteAllText(path, text);
        return path;
    }

    private static TrainingRunOptions Options(TestData.TempDir dir, string outName, int steps) => new()
    {
        DataPath = Data(dir), OutputDir = dir.File(outName), Steps = steps, BatchSize = 2, MaxSeq = 64,
        LearningRate = 5e-3, Schedule = "cosine", WarmupSteps = 2, Seed = 3,
        Lora = new LoraConfig { Rank = 4, Alpha = 8, Dropout = 0.1, TargetModules = LoraConfig.AllLinear },
    };

    [Fact]
    public void ResumingFromACheckpointGivesTheSameLossesAsAnUninterruptedRun()
    {
        using var dir = TestData.Temp();
        var p = Load();
        var full = new TrainingRun(p.Model, p.RequireTokenizer(), Options(dir, "full", 6)).Run(cancel: TestContext.Current.CancellationToken);

        var p2 = Load();
        new TrainingRun(p2.Model, p2.RequireTokenizer(), Options(dir, "part", 6) with { SaveEvery = 3 }, null).Run(cancel: TestContext.Current.CancellationToken);
        Assert.True(Directory.Exists(dir.File("part", "checkpoint-000003")));
        Assert.False(Directory.Exists(dir.File("part", "checkpoint-000003.tmp")));
        var p3 = Load();
        var resumed = new TrainingRun(p3.Model, p3.RequireTokenizer(), Options(dir, "part", 6) with { Resume = "latest" }).Run(cancel: TestContext.Current.CancellationToken);

        Assert.Equal(full.TrainLoss.Select(l => l.Step), resumed.TrainLoss.Select(l => l.Step));
        for (int i = 0; i < full.TrainLoss.Count; i++)
            Assert.True(Math.Abs(full.TrainLoss[i].Loss - resumed.TrainLoss[i].Loss) < 1e-5, $"step {i + 1}: {full.TrainLoss[i].Loss} vs {resumed.TrainLoss[i].Loss}");
        Assert.True(File.Exists(dir.File("part", "adapter_model.safetensors")));
        Assert.True(File.Exists(dir.File("part", "loss_curve.svg")));
    }

    [Fact]
    public void TrainingLowersTheValidationLossAndTheAdapterRoundTrips()
    {
        using var dir = TestData.Temp();
        var p = Load();
        var o = Options(dir, "out", 30) with { ValidationDataPath = Data(dir), ValidateEvery = 30, LearningRate = 1e-2, Lora = new LoraConfig { Rank = 8, Alpha = 16, TargetModules = LoraConfig.AllLinear } };
        var summary = new TrainingRun(p.Model, p.RequireTokenizer(), o).Run(cancel: TestContext.Current.CancellationToken);
        Assert.True(summary.TrainLoss[^1].Loss < summary.TrainLoss[0].Loss - 0.1, $"loss {summary.TrainLoss[0].Loss:F3} -> {summary.TrainLoss[^1].Loss:F3}");

        // the saved PEFT adapter on a fresh base model reproduces the trained model's logits
        int[] ids = [1, 403, 407, 261, 378];
        var trained = p.Model.Forward(Tensor.FromArray(ids, [1, 5])).ToArray<float>();
        var fresh = Load().Model;
        PeftAdapter.Apply(fresh, PeftAdapter.Load(o.OutputDir));
        var reloaded = fresh.Forward(Tensor.FromArray(ids, [1, 5])).ToArray<float>();
        Assert.Equal(trained.Length, reloaded.Length);
        for (int i = 0; i < trained.Length; i++) Assert.True(Math.Abs(trained[i] - reloaded[i]) < 1e-5);

        // fuse writes a standalone model that loads and gives the same logits
        Fuse.MergeAndSave(p.Model, dir.File("fused"));
        var fused = Pretrained.Load(dir.File("fused")).Model.Forward(Tensor.FromArray(ids, [1, 5])).ToArray<float>();
        for (int i = 0; i < trained.Length; i++) Assert.True(Math.Abs(trained[i] - fused[i]) < 1e-4);
    }

}
