using Kiln.LoRA.Models;

namespace Kiln.LoRA.Tests.Models;

public class CausalLMTests
{
    private static void AssertClose(double[] expected, float[] actual, int offset, double tol, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[offset + i]) <= tol, $"{what}[{i}]: expected {expected[i]}, got {actual[offset + i]}");
    }

    [Theory]
    [InlineData("llama", false, 4, 2)]
    [InlineData("llama", true, 4, 4)]
    [InlineData("qwen2", true, 4, 1)]
    public void ForwardMatchesNaiveLoops(string type, bool tied, int heads, int kvHeads)
    {
        var c = RandomModel.Config(type, tied, heads, kvHeads);
        var m = RandomModel.Build(c, seed: 7, out var w);
        int[] ids = [3, 17, 0, 39, 5, 5, 12];
        var logits = m.Forward(Tensor.FromArray(ids, [1, ids.Length])).ToArray<float>();
        var expected = NaiveLlama.Logits(c, w, ids);
        for (int p = 0; p < ids.Length; p++) AssertClose(expected[p], logits, p * c.VocabSize, 2e-4, $"pos {p}");
    }

    [Fact]
    public void KvCacheDecodeEqualsFullForward()
    {
        var c = RandomModel.Config();
        var m = RandomModel.Build(c, seed: 3, out _);
        int[] ids = [1, 2, 3, 4, 5, 6];
        var full = m.Forward(Tensor.FromArray(ids, [1, 6])).ToArray<float>();
        var cache = new KvCache(c.Layers);
        var prefill = m.Forward(Tensor.FromArray(ids[..4], [1, 4]), cache);
        Tensor.Eval([prefill, .. cache.Pending]); cache.Commit();
        for (int p = 4; p < 6; p++)
        {
            var step = m.Forward(Tensor.FromArray(new[] { ids[p] }, [1, 1]), cache);
            Tensor.Eval([step, .. cache.Pending]); cache.Commit();
            var got = step.ToArray<float>();
            for (int i = 0; i < c.VocabSize; i++) Assert.True(Math.Abs(full[p * c.VocabSize + i] - got[i]) < 1e-4, $"pos {p} logit {i}");
        }
        Assert.Equal(6, cache.Length);
    }

    [Fact]
    public void LeftPaddedBatchMatchesEachSequenceAlone()
    {
        var c = RandomModel.Config("qwen2", tied: true);
        var m = RandomModel.Build(c, seed: 5, out var w);
        // row 0: 5 real tokens; row 1: 2 pads then 3 real tokens (positions restart at 0 after the padding)
        int[] ids = [4, 8, 15, 16, 23, 0, 0, 42 % 40, 7, 9];
        int[] mask = [1, 1, 1, 1, 1, 0, 0, 1, 1, 1];
        int[] pos = [0, 1, 2, 3, 4, 0, 0, 0, 1, 2];
        var logits = m.Forward(Tensor.FromArray(ids, [2, 5]), positions: new Positions(pos), attentionMask: Tensor.FromArray(mask, [2, 5])).ToArray<float>();
        var row0 = NaiveLlama.Logits(c, w, ids[..5]);
        var row1 = NaiveLlama.Logits(c, w, ids[7..]);
        for (int p = 0; p < 5; p++) AssertClose(row0[p], logits, p * c.VocabSize, 2e-4, $"row 0 pos {p}");
        for (int p = 0; p < 3; p++) AssertClose(row1[p], logits, (5 + 2 + p) * c.VocabSize, 2e-4, $"row 1 pos {p}");
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void MissingOrMisshapenWeightsNameTheKey()
    {
        var c = RandomModel.Config();
        var w = RandomModel.Tensors(c, RandomModel.Weights(c, 1));
        w.Remove("model.layers.1.mlp.up_proj.weight");
        var e = Assert.Throws<InvalidDataException>(() => CausalLM.FromWeights(c, w, "tiny.safetensors"));
        Assert.Contains("tiny.safetensors", e.Message);
        Assert.Contains("model.layers.1.mlp.up_proj.weight", e.Message);

        w = RandomModel.Tensors(c, RandomModel.Weights(c, 1));
        w["model.norm.weight"] = Tensor.Zeros([7]);
        e = Assert.Throws<InvalidDataException>(() => CausalLM.FromWeights(c, w, "tiny.safetensors"));
        Assert.Contains("model.norm.weight", e.Message);
        Assert.Contains("[7]", e.Message);
    }

    [Fact]
    public void ParameterNamesAreHuggingFaceKeys()
    {
        var c = RandomModel.Config();
        var weights = RandomModel.Weights(c, 1);
        var m = RandomModel.Build(c, 1, out _);
        Assert.Equal(weights.Keys.Order(), m.NamedParameters().Select(p => p.Key).Order());
    }
}
