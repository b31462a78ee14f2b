using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kiln.LoRA.IO;

namespace Kiln.LoRA.Tests.IO;

public class Llama2cCheckpointTests
{
    private static string Stories260K => TestData.File("models", "stories260K", "stories260K.bin");

    [Fact]
    public void Stories260KHeader()
    {
        var h = Llama2cCheckpoint.Load(Stories260K).Header;
        Assert.Equal(new Llama2cHeader(64, 172, 5, 8, 4, 512, 512, SharedClassifier: true), h);
        Assert.Equal(8, h.HeadSize);
        Assert.Equal(32, h.KvDim);
        Assert.Equal(1_056_540, h.FileBytes);
    }

    /// <summary>The Python converter's output (data/hf/stories260K) is an independent reference for names, shapes, values and the RoPE permutation.</summary>
    [Fact]
    public void Stories260KIsBitIdenticalToTheConvertedSafetensors()
    {
        var checkpoint = Llama2cCheckpoint.Load(Stories260K);
        using var hf = SafetensorsFile.Open(TestData.File("hf", "stories260K", "model", "model.safetensors"));
        Assert.Equal(hf.Names.Order(StringComparer.Ordinal), checkpoint.Weights.Keys.Order(StringComparer.Ordinal));
        Assert.DoesNotContain("lm_head.weight", checkpoint.Weights.Keys);
        foreach (var (name, tensor) in checkpoint.Weights)
        {
            using var expected = hf.Load(name);
            Assert.Equal(expected.Shape, tensor.Shape);
            Assert.Equal(DType.Float32, tensor.DType);
            Assert.True(MemoryMarshal.AsBytes(expected.ToArray<float>().AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(tensor.ToArray<float>().AsSpan())), name);
        }
    }

    [Fact]
    public void HfConfigMatchesTheConvertersConfig()
    {
        var expected = JsonNode.Parse(File.ReadAllText(TestData.File("hf", "stories260K", "model", "config.json")));
        var actual = JsonNode.Parse(Llama2cCheckpoint.Load(Stories260K).HfConfigJson());
        Assert.True(JsonNode.DeepEquals(expected, actual), actual!.ToJsonString());
    }

    [Fact]
    public void PermutationMovesPairsToHalves()
    {
        // One head of 4 rows (2 RoPE pairs), 1 column: llama2.c rows [x0, y0, x1, y1] -> HF [x0, x1, y0, y1].
        Assert.Equal([0f, 2f, 1f, 3f, 4f, 6f, 5f, 7f], Llama2cCheckpoint.PermuteRopeRows([0, 1, 2, 3, 4, 5, 6, 7], heads: 2, rows: 8, cols: 1));
        Assert.Equal([0f, 1f, 4f, 5f, 2f, 3f, 6f, 7f], Llama2cCheckpoint.PermuteRopeRows([0, 1, 2, 3, 4, 5, 6, 7], heads: 1, rows: 4, cols: 2));
    }

    /// <summary>A synthetic checkpoint whose every float is its own index in the file, so placement errors show.</summary>
    private static byte[] Synthetic(int[] header, long? floats = null)
    {
        var h = Llama2cHeader.FromRaw("synthetic", header);
        long n = floats ?? (h.FileBytes - Llama2cHeader.Bytes) / 4;
        var values = Enumerable.Range(0, (int)n).Select(i => (float)i).ToArray();
        return [.. MemoryMarshal.AsBytes(header.AsSpan()), .. MemoryMarshal.AsBytes(values.AsSpan())];
    }

    [Fact]
    public void UnsharedClassifierComesLastAsLmHead()
    {
        // dim 4, hidden 6, 1 layer, 2 heads, 1 kv head, vocab -3 (separate wcls), seq 2.
        using var dir = TestData.Temp();
        File.WriteAllBytes(dir.File("c.bin"), Synthetic([4, 6, 1, 2, 1, -3, 2]));
        var c = Llama2cCheckpoint.Load(dir.File("c.bin"));
        Assert.False(c.Header.SharedClassifier);
        Assert.Equal(3, c.Header.VocabSize);
        // Floats at: emb 0, rms_att 12, wq 16, wk 32, wv 40, wo 48, rms_ffn 64, w1 68, w2 92, w3 116, rms_final 140,
        // freq_cis 144 (2 tables x seq 2 x head_size/2 1), wcls 148.
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (float)i), c.Weights["model.embed_tokens.weight"].ToArray<float>());
        Assert.Equal([12f, 13, 14, 15], c.Weights["model.layers.0.input_layernorm.weight"].ToArray<float>());
        Assert.Equal([2, 4], c.Weights["model.layers.0.self_attn.k_proj.weight"].Shape);
        Assert.Equal([6, 4], c.Weights["model.layers.0.mlp.gate_proj.weight"].Shape);
        Assert.Equal([4, 6], c.Weights["model.layers.0.mlp.down_proj.weight"].Shape);
        Assert.Equal([68f, 69, 70, 71], c.Weights["model.layers.0.mlp.gate_proj.weight"].ToArray<float>()[..4]);
        Assert.Equal([140f, 141, 142, 143], c.Weights["model.norm.weight"].ToArray<float>());
        Assert.Equal(Enumerable.Range(148, 12).Select(i => (float)i), c.Weights["lm_head.weight"].ToArray<float>());
        Assert.False(c.HfConfig()["tie_word_embeddings"]!.GetValue<bool>());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(27)]
    [InlineData(28)]
    [InlineData(1_056_539)]
    public void TruncatedFileReportsExpectedAndActualSize(int length)
    {
        using var dir = TestData.Temp();
        File.WriteAllBytes(dir.File("t.bin"), File.ReadAllBytes(Stories260K)[..length]);
        var e = Assert.Throws<InvalidDataException>(() => Llama2cCheckpoint.Load(dir.File("t.bin")));
        Assert.Contains("t.bin", e.Message);
        Assert.Contains(length.ToString(), e.Message);
        if (length >= 28) Assert.Contains("1056540", e.Message);
    }

    [Fact]
    public void TrailingDataIsRejected()
    {
        using var dir = TestData.Temp();
        File.WriteAllBytes(dir.File("t.bin"), [.. File.ReadAllBytes(Stories260K), 0, 0, 0, 0]);
        Assert.Contains("1056544", Assert.Throws<InvalidDataException>(() => Llama2cCheckpoint.Load(dir.File("t.bin"))).Message);
    }

    [Theory]
    [InlineData(new[] { 0, 172, 5, 8, 4, 512, 512 }, "dim must be positive")]
    [InlineData(new[] { 64, 172, -5, 8, 4, 512, 512 }, "n_layers must be positive")]
    [InlineData(new[] { 64, 172, 5, 7, 7, 512, 512 }, "not a multiple of n_heads 7")]
    [InlineData(new[] { 64, 172, 5, 8, 3, 512, 512 }, "not a multiple of n_kv_heads 3")]
    [InlineData(new[] { 64, 172, 5, 8, 16, 512, 512 }, "not a multiple of n_kv_heads 16")]
    [InlineData(new[] { 48, 172, 5, 16, 4, 512, 512 }, "head size 3 is odd")]
    [InlineData(new[] { 64, 172, 5, 8, 4, 0, 512 }, "vocab_size 0")]
    [InlineData(new[] { 64, 172, 5, 8, 4, int.MinValue, 512 }, "vocab_size")]
    [InlineData(new[] { 1 << 30, 1 << 30, 1 << 30, 2, 2, 1 << 30, 512 }, "overflow")]
    public void BadHeaderValues(int[] header, string expected)
    {
        using var dir = TestData.Temp();
        byte[] bytes = File.ReadAllBytes(Stories260K);
        MemoryMarshal.AsBytes(header.AsSpan()).CopyTo(bytes);
        File.WriteAllBytes(dir.File("h.bin"), bytes);
        var e = Assert.Throws<InvalidDataException>(() => Llama2cCheckpoint.Load(dir.File("h.bin")));
        Assert.Contains(expected, e.Message);
        Assert.Contains("h.bin", e.Message);
    }

    [Fact]
    public void ConfigSerialisesAsAnObject()
    {
        using var doc = JsonDocument.Parse(Llama2cCheckpoint.Load(Stories260K).HfConfigJson());
        Assert.Equal(8, doc.RootElement.GetProperty("head_dim").GetInt32());
    }
}
