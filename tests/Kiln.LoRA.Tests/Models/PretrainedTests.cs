using System.Text.Json;
using Kiln.LoRA.Adapters;
using Kiln.LoRA.Models;

namespace Kiln.LoRA.Tests.Models;

/// <summary>Real models against the reference values shipped with them (data/SOURCES.md).</summary>
public class PretrainedTests
{
    internal static JsonElement Json(params string[] path) => JsonDocument.Parse(File.ReadAllText(TestData.File(path))).RootElement;

    internal static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    internal static double MaxDiff(JsonElement expectedRows, float[] got, int vocab)
    {
        double max = 0; int r = 0;
        foreach (var row in expectedRows.EnumerateArray())
        {
            int i = 0;
            foreach (var v in row.EnumerateArray()) { max = Math.Max(max, Math.Abs(v.GetDouble() - got[r * vocab + i])); i++; }
            Assert.Equal(vocab, i);
            r++;
        }
        return max;
    }

    private static float[] Logits(CausalLM m, int[] ids, int batch = 1) =>
        m.Forward(Tensor.FromArray(ids, [batch, ids.Length / batch])).ToArray<float>();

    [Fact]
    public void Stories260KFromLlama2cFileGivesTheReferenceLogitsAndLoss()
    {
        var r = Json("models", "stories260K", "reference_logits.json");
        var p = Pretrained.Load(TestData.File("models", "stories260K", "stories260K.bin"));
        var tokens = Ints(r.GetProperty("tokens"));
        Assert.Equal(tokens, p.RequireTokenizer().Encode(r.GetProperty("prompt_text").GetString()!, addSpecial: true));
        var logits = Logits(p.Model, tokens);
        Assert.True(MaxDiff(r.GetProperty("logits"), logits, 512) < 1e-4);
        var nll = Ops.CrossEntropy(Tensor.FromArray(logits, [tokens.Length, 512]).Slice(0, 0, tokens.Length - 1), Tensor.FromArray(tokens[1..], [tokens.Length - 1])).Item<float>();
        Assert.Equal(r.GetProperty("mean_next_token_nll").GetDouble(), nll, 1e-4);
    }

    [Fact]
    public void Stories260KFromHuggingFaceFolderGivesTransformersLogits()
    {
        var r = Json("hf", "stories260K", "reference.json");
        var p = Pretrained.Load(TestData.File("hf", "stories260K", "model"));
        Assert.Null(p.Tokenizer);   // none ships with the HF conversion
        Assert.True(MaxDiff(r.GetProperty("logits"), Logits(p.Model, Ints(r.GetProperty("input_ids"))), 512) < 1e-4);
    }

    [Theory]
    [InlineData("llama_tiny", DType.BFloat16, 5e-2)]
    [InlineData("qwen2_tiny", DType.BFloat16, 5e-2)]
    [InlineData("qwen2_tiny", DType.Float16, 1e-2)]
    public void LoadedInHalfPrecisionTheWeightsAreHalfAndTheLogitsFollowTransformers(string name, DType dtype, double tol)
    {
        // The safetensors path: weights loaded straight into bf16/fp16 (Qwen2's q/k/v biases too); transformers'
        // fp32 logits to half precision's resolution, relative to the largest logit.
        var r = Json("hf", name, "reference.json");
        var m = Pretrained.Load(TestData.File("hf", name, "model"), dtype: dtype).Model;
        Assert.All(m.NamedParameters(), p => Assert.Equal(dtype, p.Value.Value.DType));
        Assert.Equal(dtype, m.ComputeDType);
        var ids = r.GetProperty("input_ids").EnumerateArray().SelectMany(Ints).ToArray();
        var expected = r.GetProperty("base_logits").EnumerateArray().SelectMany(b => b.EnumerateArray()).SelectMany(row => row.EnumerateArray()).Select(v => v.GetDouble()).ToArray();
        var got = m.Forward(Tensor.FromArray(ids, [2, ids.Length / 2])).Cast(DType.Float32).ToArray<float>();
        Assert.Equal(expected.Length, got.Length);
        double scale = expected.Max(Math.Abs);
        for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(got[i] - expected[i]) <= tol * scale, $"{name} {dtype} logit {i}: {got[i]} vs {expected[i]}");
        Assert.Throws<ArgumentException>(() => Pretrained.Load(TestData.File("hf", name, "model"), dtype: DType.Int64));
    }

    [Theory]
    [InlineData("llama_tiny")]
    [InlineData("qwen2_tiny")]
    public void TinyModelsGiveTransformersLogitsWithAndWithoutTheirPeftAdapter(string name)
    {
        var r = Json("hf", name, "reference.json");
        var m = Pretrained.Load(TestData.File("hf", name, "model")).Model;
        var ids = r.GetProperty("input_ids").EnumerateArray().SelectMany(Ints).ToArray();
        int vocab = m.Config.VocabSize;
        var baseRows = r.GetProperty("base_logits").EnumerateArray().SelectMany(b => b.EnumerateArray()).ToArray();
        var adapterRows = r.GetProperty("adapter_logits").EnumerateArray().SelectMany(b => b.EnumerateArray()).ToArray();
        Assert.True(MaxDiff(JsonSerializer.SerializeToElement(baseRows), Logits(m, ids, 2), vocab) < 1e-4);

        var adapter = PeftAdapter.Load(TestData.File("hf", name, "adapter"));
        Assert.Equal(8, adapter.Config.Rank);
        Assert.Equal(16, adapter.Config.Alpha);
        PeftAdapter.Apply(m, adapter);
        Assert.True(MaxDiff(JsonSerializer.SerializeToElement(adapterRows), Logits(m, ids, 2), vocab) < 1e-4);

        foreach (var l in Lora.Layers(m).Values) l.Merge();
        Assert.True(MaxDiff(JsonSerializer.SerializeToElement(adapterRows), Logits(m, ids, 2), vocab) < 1e-4);
    }

    [Fact]
    public void BadConfigIsAClearError()
    {
        using var dir = TestData.Temp();
        File.WriteAllText(dir.File("config.json"), """{"model_type": "llama", "vocab_size": 10, "hidden_size": 10, "intermediate_size": 4, "num_hidden_layers": 1, "num_attention_heads": 3}""");
        var e = Assert.Throws<InvalidDataException>(() => Pretrained.Load(dir.Path));
        Assert.Contains("num_attention_heads 3", e.Message);
        File.WriteAllText(dir.File("config.json"), "{ not json");
        e = Assert.Throws<InvalidDataException>(() => Pretrained.Load(dir.Path));
        Assert.Contains("config.json", e.Message);
        File.WriteAllText(dir.File("config.json"), """{"model_type": "gpt_neox"}""");
        Assert.Contains("gpt_neox", Assert.Throws<InvalidDataException>(() => Pretrained.Load(dir.Path)).Message);
        Assert.Throws<FileNotFoundException>(() => Pretrained.Load(dir.File("nope")));
    }
}
