using Kiln.LoRA.Adapters;
using Kiln.LoRA.Models;
using Kiln.LoRA.Modules;

namespace Kiln.LoRA.Tests.Models;

public class LoraModelTests
{
    private static readonly int[] Ids = [3, 17, 0, 39, 5, 12];

    private static float[] Logits(CausalLM m) => m.Forward(Tensor.FromArray(Ids, [1, Ids.Length])).ToArray<float>();

    private static void RandomizeB(IReadOnlyDictionary<string, LoraLinear> layers, int seed)
    {
        int i = 0;
        foreach (var l in layers.Values) l.B.Value = Tensor.RandomNormal([.. l.B.Shape], seed + i++, std: 0.2).Eval();
    }

    [Fact]
    public void FreshAdapterLeavesTheModelUnchanged()
    {
        var c = RandomModel.Config();
        var baseLogits = Logits(RandomModel.Build(c, 2, out _));
        var m = RandomModel.Build(c, 2, out _);
        var layers = Lora.Apply(m, new LoraConfig { Rank = 4, TargetModules = LoraConfig.AllLinear });
        Assert.Equal(2 * 7, layers.Count);   // q k v o gate up down per layer; lm_head excluded
        Assert.All(layers.Values, l => Assert.Contains(l.A.Value.ToArray<float>(), v => v != 0));
        Assert.Equal(baseLogits, Logits(m));
    }

    [Fact]
    public void AdapterChangesOutputAndMergeEqualsUnmerged()
    {
        var c = RandomModel.Config("qwen2", tied: true);
        var m = RandomModel.Build(c, 4, out _);
        var before = Logits(m);
        var layers = Lora.Apply(m, new LoraConfig { Rank = 4, Alpha = 8, TargetModules = ["q_proj", "v_proj", "down_proj"] });
        Assert.Equal(6, layers.Count);
        RandomizeB(layers, 10);
        var unmerged = Logits(m);
        Assert.True(unmerged.Zip(before).Max(p => Math.Abs(p.First - p.Second)) > 1e-3);
        foreach (var l in layers.Values) l.Merge();
        var merged = Logits(m);
        for (int i = 0; i < merged.Length; i++) Assert.True(Math.Abs(merged[i] - unmerged[i]) < 1e-4, $"logit {i}: merged {merged[i]} unmerged {unmerged[i]}");
        foreach (var l in layers.Values) l.Unmerge();
        var again = Logits(m);
        for (int i = 0; i < again.Length; i++) Assert.True(Math.Abs(again[i] - unmerged[i]) < 1e-4);
    }

    [Fact]
    public void OnlyLoraWeightsAreTrainableAndNamedLikePeft()
    {
        var m = RandomModel.Build(RandomModel.Config(), 1, out _);
        Lora.Apply(m, new LoraConfig { TargetModules = ["o_proj"] });
        var trainable = m.NamedParameters().Where(p => p.Value.Trainable).Select(p => p.Key).ToArray();
        Assert.Equal(["model.layers.0.self_attn.o_proj.lora_A.weight", "model.layers.0.self_attn.o_proj.lora_B.weight",
                      "model.layers.1.self_attn.o_proj.lora_A.weight", "model.layers.1.self_attn.o_proj.lora_B.weight"], trainable);
        Assert.Contains("model.layers.0.self_attn.o_proj.weight", m.NamedParameters().Select(p => p.Key));
    }

    [Fact]
    public void UnknownTargetListsTheLinearNames()
    {
        var m = RandomModel.Build(RandomModel.Config(), 1, out _);
        var e = Assert.Throws<ArgumentException>(() => Lora.Apply(m, new LoraConfig { TargetModules = ["qkv"] }));
        Assert.Contains("q_proj", e.Message);
        Assert.Contains("qkv", e.Message);
    }

    [Fact]
    public void RsLoraScaling()
    {
        Assert.Equal(16.0 / 8, new LoraOptions(8, 16).Scaling);
        Assert.Equal(16.0 / Math.Sqrt(8), new LoraOptions(8, 16, UseRsLora: true).Scaling, 12);
    }

    [Fact]
    public void LoraGradientsMatchFiniteDifferences()
    {
        var c = RandomModel.Config(hidden: 16, layers: 1, vocab: 20);
        var m = RandomModel.Build(c, 9, out _);
        var layers = Lora.Apply(m, new LoraConfig { Rank = 2, TargetModules = ["v_proj", "up_proj"] });
        RandomizeB(layers, 3);
        int[] ids = [1, 5, 7, 2], labels = [5, 7, 2, 9];
        var ps = m.TrainableParameters().ToArray();
        double Loss() => Ops.CrossEntropy(m.Forward(Tensor.FromArray(ids, [1, 4])).Reshape(-1, c.VocabSize), Tensor.FromArray(labels, [4])).Item<float>();
        var grads = Autograd.Grad(Ops.CrossEntropy(m.Forward(Tensor.FromArray(ids, [1, 4])).Reshape(-1, c.VocabSize), Tensor.FromArray(labels, [4])),
            ps.Select(p => p.Value).ToArray()).Select(g => g.ToArray<float>()).ToArray();
        for (int pi = 0; pi < ps.Length; pi++)
        {
            var orig = ps[pi].Value.ToArray<float>();
            foreach (int i in new[] { 0, orig.Length / 2, orig.Length - 1 })
            {
                const float h = 1e-2f;
                var plus = (float[])orig.Clone(); plus[i] += h;
                var minus = (float[])orig.Clone(); minus[i] -= h;
                ps[pi].Value = Tensor.FromArray(plus, [.. ps[pi].Shape]); double lp = Loss();
                ps[pi].Value = Tensor.FromArray(minus, [.. ps[pi].Shape]); double lm = Loss();
                ps[pi].Value = Tensor.FromArray(orig, [.. ps[pi].Shape]);
                double fd = (lp - lm) / (2 * h);
                Assert.True(Math.Abs(fd - grads[pi][i]) < 2e-3 + 2e-2 * Math.Abs(fd), $"param {pi} [{i}]: finite difference {fd}, autograd {grads[pi][i]}");
            }
        }
    }
}
