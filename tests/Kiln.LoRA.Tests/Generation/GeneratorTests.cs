using Kiln.LoRA.Generation;
using Kiln.LoRA.Models;
using Kiln.LoRA.Tests.Models;
using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Tests.Generation;

/// <summary>Ids 3..39 stand for letters 'a'+(id−3); 1 = BOS, 2 = EOS. Enough to exercise text paths.</summary>
internal sealed class LetterTokenizer : ITokenizer
{
    public int VocabSize => 40;
    public int? BosId => 1;
    public int? EosId => 2;
    public int[] Encode(string text, bool addSpecial = false) => [.. addSpecial ? [1] : Array.Empty<int>(), .. text.Select(ch => ch - 'a' + 3)];
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecial = true)
    {
        var sb = new System.Text.StringBuilder();
        foreach (int id in ids) if (id >= 3) sb.Append((char)('a' + id - 3));
        return sb.ToString();
    }
}

public class GeneratorTests
{
    private static readonly ModelConfig Config = RandomModel.Config(vocab: 40);

    [Fact]
    public void GreedyWithCacheEqualsArgmaxOfFullForwardEachStep()
    {
        var m = RandomModel.Build(Config, 11, out _);
        int[] prompt = [1, 5, 9, 4];
        var got = new Generator(m, new LetterTokenizer()).GenerateIds(prompt, new SamplingOptions { MaxTokens = 8, StopTokens = [] }).ToArray();
        var seq = new List<int>(prompt);
        for (int n = 0; n < 8; n++)
        {
            var logits = m.Forward(Tensor.FromArray(seq.ToArray(), [1, seq.Count])).ToArray<float>();
            var last = logits.AsSpan((seq.Count - 1) * 40, 40).ToArray();
            seq.Add(Array.IndexOf(last, last.Max()));
        }
        Assert.Equal(seq.Skip(prompt.Length), got);
    }

    [Fact]
    public void BatchOfPromptsEqualsEachAlone()
    {
        var m = RandomModel.Build(Config, 12, out _);
        var g = new Generator(m, new LetterTokenizer());
        int[][] prompts = [[1, 5, 9, 4, 7, 7], [1, 20], [1, 3, 3, 3]];
        var o = new SamplingOptions { MaxTokens = 6, StopTokens = [] };
        var batch = g.GenerateIdsBatch(prompts, o);
        for (int r = 0; r < prompts.Length; r++)
            Assert.Equal(g.GenerateIds(prompts[r], o with { Seed = o.Seed + (ulong)r }).ToArray(), batch[r]);
        var sampled = o with { Temperature = 0.8, TopK = 10, Seed = 5 };
        var sb = g.GenerateIdsBatch(prompts, sampled);
        for (int r = 0; r < prompts.Length; r++)
            Assert.Equal(g.GenerateIds(prompts[r], sampled with { Seed = 5 + (ulong)r }).ToArray(), sb[r]);
    }

    [Fact]
    public async Task StreamingConcatenatesToTheWholeCompletionAndHonoursStopStrings()
    {
        var m = RandomModel.Build(Config, 13, out _);
        var g = new Generator(m, new LetterTokenizer());
        var o = new SamplingOptions { MaxTokens = 12, Temperature = 1, Seed = 3, StopTokens = [] };
        var whole = g.Generate("abc", o);
        var pieces = new List<string>();
        await foreach (var p in g.StreamAsync("abc", o, TestContext.Current.CancellationToken)) pieces.Add(p);
        Assert.Equal(whole, string.Concat(pieces));
        Assert.InRange(whole.Length, 7, 12);   // ids 0..2 decode to nothing
        string stop = whole.Substring(5, 2);
        var cut = g.Generate("abc", o with { StopStrings = [stop] });
        Assert.Equal(whole[..whole.IndexOf(stop, StringComparison.Ordinal)], cut);
    }

    [Fact]
    public void SeedsAreReproducibleAndDiffer()
    {
        var m = RandomModel.Build(Config, 14, out _);
        var g = new Generator(m, new LetterTokenizer());
        var o = new SamplingOptions { MaxTokens = 10, Temperature = 1.5, StopTokens = [] };
        var a = g.GenerateIds([1, 4], o with { Seed = 1 }).ToArray();
        Assert.Equal(a, g.GenerateIds([1, 4], o with { Seed = 1 }).ToArray());
        Assert.NotEqual(a, g.GenerateIds([1, 4], o with { Seed = 2 }).ToArray());
    }

    [Fact]
    public void TooLongRequestIsAClearError()
    {
        var m = RandomModel.Build(Config, 1, out _);
        var e = Assert.Throws<ArgumentException>(() => new Generator(m, new LetterTokenizer()).GenerateIds([1, 2], new SamplingOptions { MaxTokens = 5000 }).ToArray());
        Assert.Contains("5000", e.Message);
    }
}

public class SamplerTests
{
    [Fact]
    public void TopKOneAndMinPOneAreGreedy()
    {
        float[] logits = [0.1f, 2.5f, -1f, 2.4f, 0f];
        Assert.Equal(1, new Sampler(new SamplingOptions { Temperature = 1, TopK = 1, Seed = 9 }).Next(logits));
        Assert.Equal(1, new Sampler(new SamplingOptions { Temperature = 1, MinP = 1, Seed = 9 }).Next(logits));
    }

    [Fact]
    public void FrequenciesFollowTheSoftmax()
    {
        float[] logits = [0f, MathF.Log(2), MathF.Log(3), MathF.Log(4)];   // probabilities 0.1 0.2 0.3 0.4
        var s = new Sampler(new SamplingOptions { Temperature = 1, Seed = 123 });
        var counts = new int[4];
        for (int i = 0; i < 20000; i++) counts[s.Next(logits)]++;
        for (int k = 0; k < 4; k++) Assert.InRange(counts[k] / 20000.0, 0.1 * (k + 1) - 0.015, 0.1 * (k + 1) + 0.015);
    }

    [Fact]
    public void TopPDropsTheTail()
    {
        float[] logits = [0f, MathF.Log(2), MathF.Log(3), MathF.Log(4)];
        var s = new Sampler(new SamplingOptions { Temperature = 1, TopP = 0.65, Seed = 7 });   // keeps 0.4 + 0.3
        var seen = Enumerable.Range(0, 2000).Select(_ => s.Next(logits)).ToHashSet();
        Assert.Equal([2, 3], seen.Order());
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits()
    {
        var s = new Sampler(new SamplingOptions { RepetitionPenalty = 2 });
        Assert.Equal(0, s.Next([3f, 2f, -5f], seen: []));
        Assert.Equal(1, s.Next([3f, 2f, -5f], seen: [0]));   // 3/2 = 1.5 < 2
    }
}
