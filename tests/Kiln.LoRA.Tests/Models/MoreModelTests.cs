using System.Text.Json.Nodes;
using Kiln.LoRA.Adapters;
using Kiln.LoRA.IO;
using Kiln.LoRA.Models;
using Kiln.LoRA.Modules;

namespace Kiln.LoRA.Tests.Models;

public class MoreModelTests
{
    [Fact]
    public void Llama3RopeScalingMatchesTheTransformersFormula()
    {
        // head_dim 32 with a small original context, so all three frequency bands (kept, blended, divided) occur
        var json = new JsonObject
        {
            ["model_type"] = "llama", ["vocab_size"] = 40, ["hidden_size"] = 64, ["intermediate_size"] = 48, ["num_hidden_layers"] = 1,
            ["num_attention_heads"] = 2, ["num_key_value_heads"] = 1, ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 500000.0,
            ["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 64 },
        };
        var c = ModelConfig.Parse(json);
        Assert.NotNull(c.RopeScaling);
        var w = RandomModel.Weights(c, 5);
        var m = CausalLM.FromWeights(c, RandomModel.Tensors(c, w));
        // transformers' _compute_llama3_parameters, written out independently
        int half = c.HeadDim / 2;
        var inv = new double[half];
        int bands = 0;
        for (int i = 0; i < half; i++)
        {
            double f = Math.Pow(500000.0, -2.0 * i / c.HeadDim), wavelen = 2 * Math.PI / f;
            double lowWavelen = 64 / 1.0, highWavelen = 64 / 4.0;
            if (wavelen < highWavelen) { inv[i] = f; bands |= 1; }
            else if (wavelen > lowWavelen) { inv[i] = f / 8; bands |= 2; }
            else { double smooth = (64 / wavelen - 1) / (4 - 1); inv[i] = (1 - smooth) * f / 8 + smooth * f; bands |= 4; }
        }
        Assert.Equal(7, bands);
        int[] ids = [3, 9, 27, 1, 39, 12, 5, 5, 8, 2];
        var expected = NaiveLlama.Logits(c, w, ids, invFreq: inv);
        var got = m.Forward(Tensor.FromArray(ids, [1, ids.Length])).ToArray<float>();
        for (int p = 0; p < ids.Length; p++)
            for (int v = 0; v < 40; v++) Assert.True(Math.Abs(expected[p][v] - got[p * 40 + v]) < 2e-4, $"pos {p} logit {v}: {expected[p][v]} vs {got[p * 40 + v]}");
    }

    [Fact]
    public void Bf16AndF16CheckpointsLoadIntoTheFloat32Model()
    {
        using var dir = TestData.Temp();
        var src = Pretrained.Load(TestData.File("hf", "llama_tiny", "model")).Model;
        foreach (var dt in new[] { DType.BFloat16, DType.Float16 })
        {
            string folder = dir.File(dt.ToString());
            Directory.CreateDirectory(folder);
            File.Copy(TestData.File("hf", "llama_tiny", "model", "config.json"), Path.Combine(folder, "config.json"));
            Safetensors.Save(Path.Combine(folder, "model.safetensors"), src.NamedParameters().Select(p => new KeyValuePair<string, Tensor>(p.Key, p.Value.Value.Cast(dt))));
            var m = Pretrained.Load(folder).Model;
            Assert.All(m.NamedParameters(), p => Assert.Equal(DType.Float32, p.Value.Value.DType));
            int[] ids = [1, 50, 300, 7, 9];
            var a = src.Forward(Tensor.FromArray(ids, [1, 5])).ToArray<float>();
            var b = m.Forward(Tensor.FromArray(ids, [1, 5])).ToArray<float>();
            double scale = a.Max(Math.Abs), err = a.Zip(b).Max(t => Math.Abs(t.First - t.Second));
            Assert.True(err < 3e-2 * scale, $"{dt}: max error {err} for logits up to {scale}");
            Assert.True(err > 0, $"{dt}: a lossy dtype should change the logits a little");
        }
    }

    [Fact]
    public void AdapterRegistrySwitchesWithoutReloadingTheBase()
    {
        var m = Pretrained.Load(TestData.File("hf", "llama_tiny", "model")).Model;
        var baseWeights = m.NamedParameters().ToDictionary(p => p.Key, p => p.Value.Value);
        int[] ids = [1, 50, 300, 7, 9];
        float[] Logits() => m.Forward(Tensor.FromArray(ids, [1, 5])).ToArray<float>();
        var baseLogits = Logits();

        var peft = PeftAdapter.Load(TestData.File("hf", "llama_tiny", "adapter"));
        // a second adapter: same layers, B halved
        var half = peft with { Layers = peft.Layers.ToDictionary(kv => kv.Key, kv => (kv.Value.A, (kv.Value.B * 0.5).Detach())) };
        var reg = new AdapterRegistry(m);
        reg.Add("full", peft); reg.Add("half", half);
        reg.Activate("full"); var full = Logits();
        reg.Activate("half"); var halved = Logits();
        reg.Activate("full"); Assert.Equal(full, Logits());
        Assert.NotEqual(full, halved);
        Assert.Equal("full", reg.Active);
        reg.Deactivate();
        Assert.Equal(baseLogits, Logits());
        // the base tensors were never replaced
        foreach (var (k, t) in m.NamedParameters()) Assert.Same(baseWeights[k], t.Value);
        Assert.Throws<KeyNotFoundException>(() => reg.Activate("nope"));
    }
}
