using Kiln.LoRA.Training;

namespace Kiln.LoRA.Tests.Training;

public class LrScheduleTests
{
    // Hugging Face transformers' lr_lambda definitions (optimization.py), transcribed independently.
    private static double HfConstantWithWarmup(int step, int w) => step < w ? step / (double)Math.Max(1, w) : 1.0;

    private static double HfLinear(int step, int w, int t) =>
        step < w ? step / (double)Math.Max(1, w) : Math.Max(0.0, (t - step) / (double)Math.Max(1, t - w));

    private static double HfCosine(int step, int w, int t, double minLrRate = 0)
    {
        if (step < w) return step / (double)Math.Max(1, w);
        double progress = (step - w) / (double)Math.Max(1, t - w);
        double factor = 0.5 * (1.0 + Math.Cos(Math.PI * 2.0 * 0.5 * progress));
        return Math.Max(0.0, factor * (1 - minLrRate) + minLrRate);
    }

    private static readonly int[] Steps = [0, 1, 5, 9, 10, 11, 37, 55, 99, 100];

    [Fact]
    public void ConstantMatchesHfWithAndWithoutWarmup()
    {
        foreach (int w in new[] { 0, 10 })
        {
            var s = new LrSchedule(LrScheduleKind.Constant, 2e-4, w);
            foreach (int step in Steps) Assert.Equal(2e-4 * HfConstantWithWarmup(step, w), s.LearningRate(step), 1e-15);
        }
    }

    [Fact]
    public void LinearMatchesHf()
    {
        var s = new LrSchedule(LrScheduleKind.Linear, 1e-3, 10, 100);
        foreach (int step in Steps) Assert.Equal(HfLinear(step, 10, 100), s.Multiplier(step), 1e-12);
        Assert.Equal(0.0, s.Multiplier(0));     // warmup starts at zero
        Assert.Equal(1.0, s.Multiplier(10));    // peak at the end of warmup
        Assert.Equal(0.5, s.Multiplier(55), 1e-12);
        Assert.Equal(0.0, s.Multiplier(100));   // zero at the last step
        Assert.Equal(0.0, s.Multiplier(150));   // and after it
    }

    [Fact]
    public void CosineMatchesHfWithAndWithoutWarmup()
    {
        foreach (int w in new[] { 0, 10 })
        {
            var s = new LrSchedule(LrScheduleKind.Cosine, 1e-3, w, 100);
            foreach (int step in Steps) Assert.Equal(HfCosine(step, w, 100), s.Multiplier(step), 1e-12);
        }
        var plain = new LrSchedule(LrScheduleKind.Cosine, 1e-3, 0, 100);
        Assert.Equal(1.0, plain.Multiplier(0));
        Assert.Equal(0.5, plain.Multiplier(50), 1e-12);
        Assert.Equal(0.0, plain.Multiplier(100), 1e-12);
    }

    [Fact]
    public void FloorsMatchHfCosineWithMinLrAndHoldAfterTheEnd()
    {
        var cos = new LrSchedule(LrScheduleKind.Cosine, 1e-3, 10, 100, MinLr: 1e-4);
        foreach (int step in Steps) Assert.Equal(1e-3 * HfCosine(step, 10, 100, 0.1), cos.LearningRate(step), 1e-15);
        Assert.Equal(1e-4, cos.LearningRate(100), 1e-15);
        Assert.Equal(1e-4, cos.LearningRate(180), 1e-15);   // HF's formula would climb back up here
        var lin = new LrSchedule(LrScheduleKind.Linear, 1e-3, 0, 100, MinLr: 2e-4);
        Assert.Equal(1e-3, lin.LearningRate(0), 1e-15);
        Assert.Equal(6e-4, lin.LearningRate(50), 1e-15);   // halfway between peak and floor
        Assert.Equal(2e-4, lin.LearningRate(100), 1e-15);
    }

    [Theory]
    [InlineData("constant", LrScheduleKind.Constant)]
    [InlineData("Linear", LrScheduleKind.Linear)]
    [InlineData(" cosine ", LrScheduleKind.Cosine)]
    [InlineData("warmup-cosine", LrScheduleKind.Cosine)]
    [InlineData("constant_with_warmup", LrScheduleKind.Constant)]
    [InlineData("warmup_linear", LrScheduleKind.Linear)]
    public void ParsesNames(string name, LrScheduleKind kind) => Assert.Equal(kind, LrSchedule.ParseKind(name));

    [Fact]
    public void UnknownNameListsValidNames()
    {
        var e = Assert.Throws<ArgumentException>(() => LrSchedule.ParseKind("cosine-restarts"));
        Assert.StartsWith("unknown learning-rate schedule 'cosine-restarts'; valid names: constant, linear, cosine", e.Message);
        Assert.Contains("warmup-cosine", e.Message);
    }

    [Fact]
    public void ParseValidatesSettings()
    {
        Assert.Equal(new LrSchedule(LrScheduleKind.Cosine, 1e-3, 5, 50, 1e-5), LrSchedule.Parse("cosine", 1e-3, 5, 50, 1e-5));
        Assert.Throws<ArgumentException>(() => LrSchedule.Parse("linear", 1e-3, 10, 10));
        Assert.Throws<ArgumentException>(() => LrSchedule.Parse("cosine", 1e-3, 0, 100, minLr: 2e-3));
        Assert.Throws<ArgumentException>(() => LrSchedule.Parse("constant", 0));
        Assert.Throws<ArgumentException>(() => LrSchedule.Parse("constant", 1e-3, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LrSchedule(LrScheduleKind.Constant, 1e-3).Multiplier(-1));
    }
}
