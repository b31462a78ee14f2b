using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Tests.Tokenizers;

/// <summary>The big tokenizers, each loaded once for all tests (loading a 9–11 MB tokenizer.json takes a moment).</summary>
internal static class BigTokenizers
{
    public static readonly Lazy<HfBpeTokenizer> Llama3 = new(() => HfTokenizerJson.Load(TestData.File("tokenizers", "llama3", "tokenizer.json.gz")));
    public static readonly Lazy<HfBpeTokenizer> Qwen3 = new(() => HfTokenizerJson.Load(TestData.File("tokenizers", "qwen3", "tokenizer.json.gz")));
    public static readonly Lazy<HfBpeTokenizer> Gpt2 = new(() =>
        Gpt2BpeFiles.Load(TestData.File("tokenizers", "gpt2", "encoder.json.gz"), TestData.File("tokenizers", "gpt2", "vocab.bpe")));

    public static HfBpeTokenizer ByName(string name) => name switch
    {
        "llama3" => Llama3.Value,
        "qwen3" => Qwen3.Value,
        "gpt2" => Gpt2.Value,
        _ => throw new ArgumentException(name),
    };
}

public class HfBpeTokenizerTests
{
    public static TheoryData<string, string> ExpectedFiles => new()
    {
        { "llama3", "expected_ids.json" }, { "llama3", "expected_ids_llamacpp.json" },
        { "qwen3", "expected_ids.json" }, { "qwen3", "expected_ids_llamacpp.json" },
        { "gpt2", "expected_ids.json" }, { "gpt2", "expected_ids_llamacpp.json" },
    };

    [Theory, MemberData(nameof(ExpectedFiles))]
    public void ReproducesEveryExpectedCaseAndRoundTrips(string tokenizer, string file)
    {
        var tok = BigTokenizers.ByName(tokenizer);
        var cases = ExpectedIds.Read(TestData.File("tokenizers", tokenizer, file));
        Assert.NotEmpty(cases);
        ExpectedIds.AssertAll(cases, c =>
            ExpectedIds.Compare("ids", c.Text, c.Ids, tok.Encode(c.Text))
                .Concat(c.WithSpecial == null ? [] : ExpectedIds.Compare("ids_with_special", c.Text, c.WithSpecial, tok.Encode(c.Text, addSpecial: true)))
                .Concat(tok.Decode(tok.Encode(c.Text), skipSpecial: false) == c.Text ? [] : [$"round trip {c.Text}: got {tok.Decode(tok.Encode(c.Text), skipSpecial: false)}"]));
    }

    [Fact]
    public void SpecialTokensAndSizesComeFromTheFiles()
    {
        var llama3 = BigTokenizers.Llama3.Value;
        Assert.Equal(128256, llama3.VocabSize);
        Assert.Equal(llama3.TokenToId("<|begin_of_text|>"), llama3.BosId);
        Assert.Equal(llama3.TokenToId("<|end_of_text|>"), llama3.EosId); // tokenizer_config.json's eos_token

        var qwen3 = BigTokenizers.Qwen3.Value;
        Assert.Null(qwen3.BosId); // tokenizer_config.json: bos_token null
        Assert.Equal(qwen3.TokenToId("<|im_end|>"), qwen3.EosId);
        Assert.Empty(qwen3.SpecialPrefixIds);

        var gpt2 = BigTokenizers.Gpt2.Value;
        Assert.Equal(50257, gpt2.VocabSize);
        Assert.Equal(gpt2.TokenToId(Gpt2BpeFiles.EndOfText), gpt2.EosId);
    }

    [Fact]
    public void DecodeSkipsSpecialTokensOnlyWhenAsked()
    {
        var qwen3 = BigTokenizers.Qwen3.Value;
        const string text = "<|im_start|>user\nHi<|im_end|>";
        int[] ids = qwen3.Encode(text);
        Assert.Equal(text, qwen3.Decode(ids, skipSpecial: false));
        Assert.Equal("user\nHi", qwen3.Decode(ids));
    }

    [Fact]
    public void TemplateProcessingAddsBosLikeMetasLlama3TokenizerJson()
    {
        // The shipped Llama 3 tokenizer.json has only a ByteLevel post-processor (so addSpecial adds nothing, as
        // expected_ids.json's ids_with_special says); Meta's own file wraps it in TemplateProcessing with BOS.
        string json = System.Text.Encoding.UTF8.GetString(TokenizerFileBytes("llama3", "tokenizer.json.gz"));
        const string byteLevel = "\"post_processor\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n    \"trim_offsets\": false,\n    \"use_regex\": true\n  }";
        Assert.Contains(byteLevel, json);
        json = json.Replace(byteLevel, """
            "post_processor": {"type": "Sequence", "processors": [
              {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
              {"type": "TemplateProcessing",
               "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
               "pair": [],
               "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]}}}]}
            """);
        var tok = HfTokenizerJson.Parse(System.Text.Encoding.UTF8.GetBytes(json));
        var plain = BigTokenizers.Llama3.Value;
        Assert.Equal(128000, tok.BosId);
        foreach (var c in ExpectedIds.Read(TestData.File("tokenizers", "llama3", "expected_ids.json")))
        {
            Assert.Equal(c.Ids, tok.Encode(c.Text));
            Assert.Equal([128000, .. c.Ids], tok.Encode(c.Text, addSpecial: true));
            Assert.Equal(c.Text, tok.Decode(tok.Encode(c.Text, addSpecial: true)));
        }
    }

    [Fact]
    public void EncodeIsThreadSafe()
    {
        var tok = BigTokenizers.Qwen3.Value;
        var cases = ExpectedIds.Read(TestData.File("tokenizers", "qwen3", "expected_ids_llamacpp.json"));
        Parallel.For(0, 8, _ =>
        {
            foreach (var c in cases) Assert.Equal(c.Ids, tok.Encode(c.Text));
        });
    }

    private static byte[] TokenizerFileBytes(string dir, string name)
    {
        using var gz = new System.IO.Compression.GZipStream(File.OpenRead(TestData.File("tokenizers", dir, name)), System.IO.Compression.CompressionMode.Decompress);
        using var ms = new MemoryStream();
        gz.CopyTo(ms);
        return ms.ToArray();
    }
}
