using System.Text.Json.Nodes;
using Kiln.LoRA.IO;

namespace Kiln.LoRA.Tests.IO;

public class ModelWeightsTests
{
    private const string Shard1 = "model-00001-of-00002.safetensors", Shard2 = "model-00002-of-00002.safetensors";

    /// <summary>llama_tiny split into two shards by Save, with the index transformers would write.</summary>
    private static TestData.TempDir ShardedLlamaTiny(Action<JsonObject>? editIndex = null)
    {
        var dir = TestData.Temp();
        using var source = SafetensorsFile.Open(SafetensorsTestFiles.LlamaTiny);
        var names = source.Names.ToArray();
        var first = names.Where((_, i) => i % 2 == 0).ToArray();   // interleaved, so each shard holds parts of every layer
        var second = names.Except(first).ToArray();
        Safetensors.Save(dir.File(Shard1), first.Select(n => KeyValuePair.Create(n, source.Load(n))), source.Metadata);
        Safetensors.Save(dir.File(Shard2), second.Select(n => KeyValuePair.Create(n, source.Load(n))), source.Metadata);
        var map = new JsonObject();
        foreach (var n in names) map[n] = first.Contains(n) ? Shard1 : Shard2;
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = 634216 }, ["weight_map"] = map };
        editIndex?.Invoke(index);
        AtomicFile.WriteAllText(dir.File(ModelWeights.IndexFileName), index.ToJsonString());
        return dir;
    }

    [Fact]
    public void ShardedModelLoadsTheSameTensorsAsTheSingleFile()
    {
        using var dir = ShardedLlamaTiny();
        using var single = SafetensorsFile.Open(SafetensorsTestFiles.LlamaTiny);
        using var sharded = ModelWeights.Open(dir.Path);
        Assert.Equal(2, sharded.Shards.Count);
        Assert.Equal(single.Names.Order(StringComparer.Ordinal), sharded.Names.Order(StringComparer.Ordinal));
        foreach (var name in single.Names)
        {
            Assert.True(sharded.Contains(name));
            Assert.Equal(single.Info(name).Shape, sharded.Info(name).Shape);
            Assert.Equal(single.Load(name).ToArray<float>(), sharded.Load(name).ToArray<float>());
        }
        Assert.Equal(DType.Float64, sharded.Load("model.norm.weight", DType.Float64).DType);
    }

    [Fact]
    public void SingleFileModelDirectory()
    {
        using var weights = ModelWeights.Open(TestData.File("hf", "qwen2_tiny", "model"));
        Assert.Single(weights.Shards);
        Assert.Equal([64], weights.Info("model.layers.1.self_attn.q_proj.bias").Shape);
        Assert.Contains("'model.layers.1.self_attn.q_proj.bias'",
            Assert.Throws<KeyNotFoundException>(() => weights.Load("model.layers.1.self_attn.q_proj.biass")).Message);
    }

    [Fact]
    public void MissingShardIsNamed()
    {
        using var dir = ShardedLlamaTiny();
        File.Delete(dir.File(Shard2));
        var e = Assert.Throws<FileNotFoundException>(() => ModelWeights.Open(dir.Path));
        Assert.Contains(Shard2, e.Message);
        Assert.Contains(ModelWeights.IndexFileName, e.Message);
    }

    [Fact]
    public void IndexPointingAtTheWrongShardIsReported()
    {
        using var dir = ShardedLlamaTiny(index => index["weight_map"]!["model.norm.weight"] = index["weight_map"]!["model.norm.weight"]!.GetValue<string>() == Shard1 ? Shard2 : Shard1);
        var e = Assert.Throws<InvalidDataException>(() => ModelWeights.Open(dir.Path));
        Assert.Contains("'model.norm.weight'", e.Message);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("{\"metadata\": {}}")]
    [InlineData("{\"weight_map\": {\"a\": 3}}")]
    [InlineData("{\"weight_map\": {\"a\": \"../elsewhere.safetensors\"}}")]
    [InlineData("{\"weight_map\": {\"a\": \"/abs.safetensors\"}}")]
    public void MalformedIndex(string json)
    {
        using var dir = TestData.Temp();
        File.WriteAllText(dir.File(ModelWeights.IndexFileName), json);
        var e = Assert.Throws<InvalidDataException>(() => ModelWeights.Open(dir.Path));
        Assert.Contains(ModelWeights.IndexFileName, e.Message);
    }

    [Fact]
    public void EmptyDirectoryNamesWhatItLookedFor()
    {
        using var dir = TestData.Temp();
        var e = Assert.Throws<FileNotFoundException>(() => ModelWeights.Open(dir.Path));
        Assert.Contains(ModelWeights.SingleFileName, e.Message);
        Assert.Contains(ModelWeights.IndexFileName, e.Message);
    }

    [Fact]
    public void DisposeClosesEveryShard()
    {
        using var dir = ShardedLlamaTiny();
        var weights = ModelWeights.Open(dir.Path);
        string inFirst = weights.Shards[0].Names[0], inSecond = weights.Shards[1].Names[0];
        weights.Dispose();
        Assert.Throws<ObjectDisposedException>(() => weights.Load(inFirst));
        Assert.Throws<ObjectDisposedException>(() => weights.Load(inSecond));
    }
}
