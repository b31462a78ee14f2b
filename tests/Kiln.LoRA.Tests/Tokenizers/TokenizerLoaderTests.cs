using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Tests.Tokenizers;

public class TokenizerLoaderTests
{
    private static string Tok512Path => TestData.File("models", "stories260K", "tok512.bin");

    [Fact]
    public void PicksTheImplementationFromFileOrDirectory()
    {
        Assert.IsType<Llama2cTokenizer>(TokenizerLoader.Load(Tok512Path));
        Assert.IsType<Llama2cTokenizer>(TokenizerLoader.Load(TestData.File("tokenizers", "llama2")));
        // models/stories260K holds the checkpoint stories260K.bin too; the tokenizer is the one named "tok".
        Assert.Equal(512, TokenizerLoader.Load(TestData.File("models", "stories260K")).VocabSize);
        Assert.Equal(50257, TokenizerLoader.Load(TestData.File("tokenizers", "gpt2")).VocabSize);
        Assert.Equal([15496, 995], TokenizerLoader.Load(TestData.File("tokenizers", "gpt2", "encoder.json.gz")).Encode("Hello world"));
    }

    [Fact]
    public void LoadsPlainAndGzippedTokenizerJson()
    {
        using var dir = TestData.Temp();
        var expected = ExpectedIds.Read(TestData.File("tokenizers", "qwen3", "expected_ids.json"));
        using (var gz = new System.IO.Compression.GZipStream(File.OpenRead(TestData.File("tokenizers", "qwen3", "tokenizer.json.gz")), System.IO.Compression.CompressionMode.Decompress))
        using (var plain = File.Create(dir.File("tokenizer.json")))
            gz.CopyTo(plain);
        var fromDir = TokenizerLoader.Load(dir.Path);
        var fromFile = TokenizerLoader.Load(dir.File("tokenizer.json"));
        foreach (var c in expected)
        {
            Assert.Equal(c.Ids, fromDir.Encode(c.Text));
            Assert.Equal(c.Ids, fromFile.Encode(c.Text));
        }
    }

    [Fact]
    public void MissingFilesAreNamed()
    {
        using var dir = TestData.Temp();
        var e = Assert.Throws<FileNotFoundException>(() => TokenizerLoader.Load(dir.File("nope.bin")));
        Assert.Contains("nope.bin", e.Message);
        e = Assert.Throws<FileNotFoundException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Contains(dir.Path, e.Message);
        File.WriteAllText(dir.File("encoder.json"), "{}");
        e = Assert.Throws<FileNotFoundException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Contains("vocab.bpe", e.Message);
    }

    public static TheoryData<int> TruncationPoints => [0, 3, 4, 9, 100, 6226];

    [Theory, MemberData(nameof(TruncationPoints))]
    public void TruncatedLlama2cFileIsInvalidData(int length)
    {
        using var dir = TestData.Temp();
        string path = dir.File("tok512.bin");
        File.WriteAllBytes(path, File.ReadAllBytes(Tok512Path)[..length]);
        var e = Assert.Throws<InvalidDataException>(() => TokenizerLoader.Load(path));
        Assert.StartsWith("tok512.bin: ", e.Message);
    }

    [Fact]
    public void ImpossiblePieceLengthNamesPieceAndOffset()
    {
        using var dir = TestData.Temp();
        string path = dir.File("tok512.bin");
        byte[] bytes = File.ReadAllBytes(Tok512Path);
        // Piece 0 starts at offset 4: score at 4, length at 8. Make it longer than the whole file.
        BitConverter.TryWriteBytes(bytes.AsSpan(8), 99999);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => TokenizerLoader.Load(path));
        Assert.Contains("piece 0 length 99999", e.Message);
        Assert.Contains("offset 8", e.Message);
    }

    [Theory]
    [InlineData("tokenizer.bin")]
    [InlineData("tokenizer.json")]
    [InlineData("tokenizer.json.gz")]
    [InlineData("encoder.json")]
    public void GarbageFilesAreInvalidData(string name)
    {
        using var dir = TestData.Temp();
        var random = new Random(42);
        byte[] garbage = new byte[5000];
        random.NextBytes(garbage);
        File.WriteAllBytes(dir.File(name), garbage);
        File.WriteAllText(dir.File("vocab.bpe"), "#version: 0.2\n");
        var e = Assert.Throws<InvalidDataException>(() => TokenizerLoader.Load(dir.File(name)));
        Assert.StartsWith(name + ": ", e.Message);
    }

    [Theory]
    [InlineData("{}", "no \"model\" object")]
    [InlineData("""{"model": {"type": "Unigram"}}""", "Unigram")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}""", "lacks the byte-level symbol")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": 5}}""", "malformed")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}}""", "Metaspace")]
    public void UnsupportedOrMalformedTokenizerJsonIsInvalidData(string json, string expectedMessagePart)
    {
        using var dir = TestData.Temp();
        File.WriteAllText(dir.File("tokenizer.json"), json);
        var e = Assert.Throws<InvalidDataException>(() => TokenizerLoader.Load(dir.File("tokenizer.json")));
        Assert.Contains(expectedMessagePart, e.Message);
        Assert.StartsWith("tokenizer.json: ", e.Message);
    }
}
