using System.Diagnostics;
using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Tests.Tokenizers;

public class Llama2cTokenizerTests
{
    private static readonly Lazy<Llama2cTokenizer> Tok512 = new(() => Llama2cTokenizer.Load(TestData.File("models", "stories260K", "tok512.bin")));
    private static readonly Lazy<Llama2cTokenizer> Llama2 = new(() => Llama2cTokenizer.Load(TestData.File("tokenizers", "llama2", "tokenizer.bin")));

    [Fact]
    public void Tok512HasTheDocumentedLayout()
    {
        var tok = Tok512.Value;
        Assert.Equal(512, tok.VocabSize);
        Assert.Equal(7, tok.MaxTokenLength);
        Assert.Equal((1, 2), (tok.BosId, tok.EosId));
        Assert.Equal("<0x41>"u8.ToArray(), tok.PieceBytes(3 + 0x41).ToArray());
    }

    [Fact]
    public void Tok512ReproducesRunCEncode() => AssertMatchesExpected(Tok512.Value, TestData.File("models", "stories260K", "tok512_expected_ids.json"));

    [Fact]
    public void Llama2ReproducesRunCAndHuggingFaceIds()
    {
        Assert.Equal(32000, Llama2.Value.VocabSize);
        AssertMatchesExpected(Llama2.Value, TestData.File("tokenizers", "llama2", "expected_ids.json"));
    }

    private static void AssertMatchesExpected(Llama2cTokenizer tok, string path) =>
        ExpectedIds.AssertAll(ExpectedIds.Read(path, "ids_with_bos"), c =>
            ExpectedIds.Compare("ids", c.Text, c.Ids, tok.Encode(c.Text))
                .Concat(ExpectedIds.Compare("ids_with_bos", c.Text, c.WithSpecial!, tok.Encode(c.Text, addSpecial: true)))
                .Concat(tok.Decode(c.WithSpecial!) == c.Text ? [] : [$"decode {c.Text}: got {tok.Decode(c.WithSpecial!)}"]));

    [Fact]
    public void DecodeDropsTheDummyPrefixOnlyAfterBos()
    {
        var tok = Tok512.Value;
        int[] ids = tok.Encode("Once upon a time", addSpecial: true);
        Assert.Equal("Once upon a time", tok.Decode(ids));
        Assert.Equal(" Once upon a time", tok.Decode(ids.AsSpan(1))); // run.c keeps it when no BOS precedes
        Assert.Equal("\n<s>\nOnce upon a time", tok.Decode(ids, skipSpecial: false));
    }

    [Fact]
    public void FastMergeEqualsRunCsQuadraticLoopOnRealText()
    {
        var tok = Tok512.Value;
        string text = File.ReadAllText(TestData.File("corpus", "tinystories", "tinystories_train_head.txt"))[..2500];
        Assert.Equal(NaiveRunCEncode(tok, text), tok.Encode(text, addSpecial: true));
    }

    [Fact]
    public void EncodesTheTinyStoriesHeadQuicklyAndRoundTrips()
    {
        var tok = Tok512.Value;
        string text = File.ReadAllText(TestData.File("corpus", "tinystories", "tinystories_train_head.txt"));
        var sw = Stopwatch.StartNew();
        int[] ids = tok.Encode(text, addSpecial: true);
        sw.Stop();
        Assert.Equal(text, tok.Decode(ids));
        // Generous bound for a loaded 2-core CI box; typically well under 100 ms.
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), $"encoding {text.Length} chars took {sw.Elapsed}");
    }

    [Fact]
    public void EncodeIsThreadSafe()
    {
        var tok = Llama2.Value;
        var cases = ExpectedIds.Read(TestData.File("tokenizers", "llama2", "expected_ids.json"), "ids_with_bos");
        Parallel.For(0, 8, _ =>
        {
            foreach (var c in cases) Assert.Equal(c.Ids, tok.Encode(c.Text));
        });
    }

    /// <summary>llama2c_reference.py's encode, transcribed literally (rescan all pairs after every merge).</summary>
    private static int[] NaiveRunCEncode(Llama2cTokenizer tok, string text)
    {
        var lookup = new Dictionary<string, int>();
        for (int i = 0; i < tok.VocabSize; i++) lookup.TryAdd(Convert.ToHexString(tok.PieceBytes(i)), i);
        var toks = new List<int> { 1 };
        byte[] raw = System.Text.Encoding.UTF8.GetBytes(text);
        if (raw.Length > 0) toks.Add(lookup[Convert.ToHexString(" "u8)]);
        for (int i = 0; i < raw.Length;)
        {
            int j = i + 1;
            while (j < raw.Length && (raw[j] & 0xC0) == 0x80 && j - i < 4) j++;
            if (lookup.TryGetValue(Convert.ToHexString(raw, i, j - i), out int id)) toks.Add(id);
            else for (int k = i; k < j; k++) toks.Add(raw[k] + 3);
            i = j;
        }
        while (true)
        {
            float best = -1e10f; int bestId = -1, bestIdx = -1;
            for (int k = 0; k < toks.Count - 1; k++)
                if (lookup.TryGetValue(Convert.ToHexString([.. tok.PieceBytes(toks[k]), .. tok.PieceBytes(toks[k + 1])]), out int idx) && tok.Score(idx) > best)
                    (best, bestId, bestIdx) = (tok.Score(idx), idx, k);
            if (bestIdx == -1) break;
            toks[bestIdx] = bestId;
            toks.RemoveAt(bestIdx + 1);
        }
        return [.. toks];
    }
}
