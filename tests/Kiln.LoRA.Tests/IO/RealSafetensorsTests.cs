using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Kiln.LoRA.IO;

namespace Kiln.LoRA.Tests.IO;

/// <summary>The real files under data/hf, made by transformers/PEFT (and the stories260K converter).</summary>
public class RealSafetensorsTests
{
    public static TheoryData<string> RealFiles => new(
        "hf/llama_tiny/model/model.safetensors", "hf/qwen2_tiny/model/model.safetensors",
        "hf/stories260K/model/model.safetensors", "hf/llama_tiny/adapter/adapter_model.safetensors",
        "hf/qwen2_tiny/adapter/adapter_model.safetensors");

    /// <summary>
    /// Every tensor's values equal floats read with BinaryReader at the offsets found by a separate, minimal
    /// header parse: the reader and this check share no code.
    /// </summary>
    [Theory]
    [MemberData(nameof(RealFiles))]
    public void EveryTensorMatchesAnIndependentRead(string relative)
    {
        string path = TestData.File(relative.Split('/'));
        byte[] bytes = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var doc = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, n));
        var expectedNames = doc.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__").Select(p => p.Name).ToList();

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(expectedNames.Order(StringComparer.Ordinal), file.Names.Order(StringComparer.Ordinal));
        Assert.Equal("pt", file.Metadata["format"]);
        using var reader = new BinaryReader(new MemoryStream(bytes));
        foreach (var name in expectedNames)
        {
            var entry = doc.RootElement.GetProperty(name);
            Assert.Equal("F32", entry.GetProperty("dtype").GetString());
            int[] shape = entry.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            long begin = entry.GetProperty("data_offsets")[0].GetInt64();
            using var t = file.Load(name);
            Assert.Equal(shape, t.Shape);
            var values = t.ToArray<float>();
            reader.BaseStream.Position = 8 + n + begin;
            for (int i = 0; i < values.Length; i++)
                Assert.Equal(BitConverter.SingleToInt32Bits(reader.ReadSingle()), BitConverter.SingleToInt32Bits(values[i]));
        }
    }

    [Theory]
    [InlineData("llama_tiny", false)]
    [InlineData("qwen2_tiny", true)]
    [InlineData("stories260K", true)]
    public void NamesAndShapesFollowTheConfig(string model, bool tied)
    {
        using var cfgDoc = JsonDocument.Parse(File.ReadAllText(TestData.File("hf", model, "model", "config.json")));
        var cfg = cfgDoc.RootElement;
        int hidden = cfg.GetProperty("hidden_size").GetInt32(), ffn = cfg.GetProperty("intermediate_size").GetInt32();
        int layers = cfg.GetProperty("num_hidden_layers").GetInt32(), vocab = cfg.GetProperty("vocab_size").GetInt32();
        int heads = cfg.GetProperty("num_attention_heads").GetInt32(), kvHeads = cfg.GetProperty("num_key_value_heads").GetInt32();
        int headDim = cfg.TryGetProperty("head_dim", out var hd) ? hd.GetInt32() : hidden / heads;
        Assert.Equal(tied, cfg.GetProperty("tie_word_embeddings").GetBoolean());

        var expected = new Dictionary<string, int[]> { ["model.embed_tokens.weight"] = [vocab, hidden], ["model.norm.weight"] = [hidden] };
        if (!tied) expected["lm_head.weight"] = [vocab, hidden];
        bool bias = model == "qwen2_tiny";
        for (int i = 0; i < layers; i++)
        {
            string p = $"model.layers.{i}.";
            expected[p + "input_layernorm.weight"] = [hidden];
            expected[p + "post_attention_layernorm.weight"] = [hidden];
            expected[p + "self_attn.q_proj.weight"] = [heads * headDim, hidden];
            expected[p + "self_attn.k_proj.weight"] = [kvHeads * headDim, hidden];
            expected[p + "self_attn.v_proj.weight"] = [kvHeads * headDim, hidden];
            expected[p + "self_attn.o_proj.weight"] = [hidden, heads * headDim];
            expected[p + "mlp.gate_proj.weight"] = [ffn, hidden];
            expected[p + "mlp.up_proj.weight"] = [ffn, hidden];
            expected[p + "mlp.down_proj.weight"] = [hidden, ffn];
            if (bias)
            {
                expected[p + "self_attn.q_proj.bias"] = [heads * headDim];
                expected[p + "self_attn.k_proj.bias"] = [kvHeads * headDim];
                expected[p + "self_attn.v_proj.bias"] = [kvHeads * headDim];
            }
        }

        using var weights = ModelWeights.Open(TestData.File("hf", model, "model"));
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), weights.Names.Order(StringComparer.Ordinal));
        foreach (var (name, shape) in expected)
        {
            Assert.Equal(shape, weights.Info(name).Shape);
            Assert.Equal(DType.Float32, weights.Info(name).DType);
        }
    }

    [Fact]
    public void AdapterHoldsRankRLoraPairsForAllSevenProjections()
    {
        using var cfgDoc = JsonDocument.Parse(File.ReadAllText(TestData.File("hf", "llama_tiny", "adapter", "adapter_config.json")));
        int r = cfgDoc.RootElement.GetProperty("r").GetInt32();
        using var file = SafetensorsFile.Open(TestData.File("hf", "llama_tiny", "adapter", "adapter_model.safetensors"));
        // (out, in) of each projection for hidden 64, 4 heads x 16, 2 kv heads, ffn 176.
        var dims = new Dictionary<string, (int Out, int In)>
        {
            ["self_attn.q_proj"] = (64, 64), ["self_attn.k_proj"] = (32, 64), ["self_attn.v_proj"] = (32, 64), ["self_attn.o_proj"] = (64, 64),
            ["mlp.gate_proj"] = (176, 64), ["mlp.up_proj"] = (176, 64), ["mlp.down_proj"] = (64, 176),
        };
        Assert.Equal(2 * 2 * dims.Count, file.Names.Count);
        for (int layer = 0; layer < 2; layer++)
            foreach (var (module, (o, i)) in dims)
            {
                string p = $"base_model.model.model.layers.{layer}.{module}";
                Assert.Equal([r, i], file.Info(p + ".lora_A.weight").Shape);
                Assert.Equal([o, r], file.Info(p + ".lora_B.weight").Shape);
                Assert.Contains(file.Load(p + ".lora_B.weight").ToArray<float>(), v => v != 0);   // B was filled non-zero
            }
    }

    [Fact]
    public void MissingNameSuggestsCloseNames()
    {
        using var file = SafetensorsFile.Open(SafetensorsTestFiles.LlamaTiny);
        var e = Assert.Throws<KeyNotFoundException>(() => file.Load("layers.0.self_attn.q_proj.weight"));
        Assert.Contains("llama_tiny", e.Message);
        Assert.Contains("'layers.0.self_attn.q_proj.weight'", e.Message);
        Assert.Contains("'model.layers.0.self_attn.q_proj.weight'", e.Message);
        Assert.Throws<KeyNotFoundException>(() => file.Info("nope"));
        Assert.False(file.Contains("nope"));
    }

    [Fact]
    public void RealFileRoundTripsThroughTheWriterByteForByte()
    {
        // The converter writes sorted keys, F32 only, padded header: the same layout Save produces.
        string src = TestData.File("hf", "stories260K", "model", "model.safetensors");
        using var dir = TestData.Temp();
        using (var file = SafetensorsFile.Open(src))
            Safetensors.Save(dir.File("copy.safetensors"), file.Names.Select(n => new KeyValuePair<string, Tensor>(n, file.Load(n))), file.Metadata);
        Assert.Equal(File.ReadAllBytes(src), File.ReadAllBytes(dir.File("copy.safetensors")));
    }
}
