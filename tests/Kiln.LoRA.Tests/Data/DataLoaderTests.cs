using Kiln.LoRA.Data;

namespace Kiln.LoRA.Tests.Data;

public class DataLoaderTests
{
    private const int I = Batch.Ignore;
    private static readonly ByteTokenizer Tok = new();
    private static readonly SourceLocation At = new("t.txt", 1);

    private static TokenizedExample[] Texts(params string[] texts) =>
        new ExampleTokenizer(Tok).TokenizeAll(texts.Select(t => new TextExample(t, At)));

    /// <summary>Examples whose ids are unique across all examples: example k is a run of consecutive ids, so
    /// within an example the next token is always id + 1 and any id identifies its example and position.</summary>
    private static TokenizedExample[] UniqueRuns(int[] lengths)
    {
        var result = new TokenizedExample[lengths.Length];
        int next = 1000;
        for (int k = 0; k < lengths.Length; k++)
        {
            int[] ids = [.. Enumerable.Range(next, lengths[k])];
            // Every third token is masked to check that masks travel with their tokens.
            bool[] trained = [.. ids.Select((id, i) => i > 0 && id % 3 != 0)];
            result[k] = new TokenizedExample(ids, trained);
            next += lengths[k] + 100;
        }
        return result;
    }

    private static readonly int[] Lengths = [5, 1, 12, 3, 7, 9, 2, 4, 11, 6];

    private static int C(char c) => c + 3;

    [Fact]
    public void PackingWithoutShuffleMatchesHandComputedBatches()
    {
        // Stream: [1 a b 2 1 c d e 2] (N = 9); rows of L = 3 start at 0, 3, 6; 8 inputs need 3 rows.
        var loader = new DataLoader(Texts("ab", "cde"), new BatchOptions(BatchSize: 2, SeqLen: 3, Shuffle: false), padId: 2);
        Assert.Equal(2, loader.BatchesPerEpoch);
        var b0 = loader.Next();
        Assert.Equal((2, 3), (b0.Rows, b0.SeqLen));
        Assert.Equal([1, C('a'), C('b'), /**/ 2, 1, C('c')], b0.Inputs);
        Assert.Equal([C('a'), C('b'), 2, /**/ I, C('c'), C('d')], b0.Labels);  // BOS of the 2nd document is not a target
        Assert.Equal((5, 6), (b0.TrainedTokens, b0.TotalTokens));
        Assert.Equal(new DataState(0, 0), b0.Position);
        var b1 = loader.Next();
        Assert.Equal((1, 3), (b1.Rows, b1.SeqLen));
        Assert.Equal([C('d'), C('e'), 2], b1.Inputs);   // the last position is padding (pad id 2)
        Assert.Equal([C('e'), 2, I], b1.Labels);
        Assert.Equal((2, 2), (b1.TrainedTokens, b1.TotalTokens));
        Assert.Equal(new DataState(1, 0), loader.State);
    }

    [Fact]
    public void PackingMasksPromptTokens()
    {
        var examples = new ExampleTokenizer(Tok).TokenizeAll([new PromptCompletionExample("p", "c", At)]);
        var b = new DataLoader(examples, new BatchOptions(1, 8, Shuffle: false), padId: 0).Next();
        // Stream [1 p c 2]: inputs 1 p c, labels: p masked, c, EOS.
        Assert.Equal([1, C('p'), C('c'), 0, 0, 0, 0, 0], b.Inputs);
        Assert.Equal([I, C('c'), 2, I, I, I, I, I], b.Labels);
        Assert.Equal((2, 3), (b.TrainedTokens, b.TotalTokens));
    }

    [Theory]
    [InlineData(1, 4, 0UL)]
    [InlineData(3, 5, 7UL)]
    [InlineData(4, 16, 42UL)]
    public void PackingCoversEveryTokenOncePerEpoch(int batchSize, int seqLen, ulong seed)
    {
        var examples = UniqueRuns(Lengths);
        var loader = new DataLoader(examples, new BatchOptions(batchSize, seqLen, Seed: seed), padId: 0);
        for (int epoch = 0; epoch < 2; epoch++)
        {
            var inputs = new List<int>();
            var labels = new List<int>();
            foreach (var b in loader.EpochBatches(epoch))
            {
                for (int k = 0; k < b.Inputs.Length; k++)
                {
                    if (b.Inputs[k] == 0) { Assert.Equal(I, b.Labels[k]); continue; }   // padding
                    inputs.Add(b.Inputs[k]);
                    if (b.Labels[k] == I) continue;
                    Assert.Equal(b.Inputs[k] + 1, b.Labels[k]);   // the next token of the same document
                    labels.Add(b.Labels[k]);
                }
                Assert.Equal(b.Labels.Count(l => l != I), b.TrainedTokens);
                Assert.Equal(b.Inputs.Count(id => id != 0), b.TotalTokens);
            }
            // Every token is an input once, except the stream's very last one (the last token of some document).
            var all = examples.SelectMany(e => e.Ids).ToList();
            Assert.Equal(all.Count - 1, inputs.Count);
            Assert.Equal(inputs.Count, inputs.Distinct().Count());
            var missing = Assert.Single(all.Except(inputs));
            Assert.Contains(examples, e => e.Ids[^1] == missing);
            // Every trained token is a target exactly once.
            var trained = examples.SelectMany(e => e.Ids.Where((_, i) => e.Trained[i])).Order();
            Assert.Equal(trained, labels.Order());
        }
    }

    [Fact]
    public void BucketsWithoutShuffleMatchHandComputedBatches()
    {
        // Ids (with BOS/EOS): "a" -> 3 tokens, "abcd" -> 6, "ab" -> 4, "abcdefg" -> 9 truncated to L+1 = 6.
        // Sorted by input length (2, 3, 5, 5): batches {"a","ab"} then {"abcd","abcdefg"}.
        var loader = new DataLoader(Texts("a", "abcd", "ab", "abcdefg"), new BatchOptions(2, 5, BatchMode.LengthBuckets, Shuffle: false), padId: 2);
        var b0 = loader.Next();
        Assert.Equal((2, 3), (b0.Rows, b0.SeqLen));   // the longest row of this batch, not the maximum 5
        Assert.Equal([1, C('a'), 2, /**/ 1, C('a'), C('b')], b0.Inputs);
        Assert.Equal([C('a'), 2, I, /**/ C('a'), C('b'), 2], b0.Labels);
        Assert.Equal((5, 5), (b0.TrainedTokens, b0.TotalTokens));
        var b1 = loader.Next();
        Assert.Equal((2, 5), (b1.Rows, b1.SeqLen));
        Assert.Equal([1, C('a'), C('b'), C('c'), C('d'), /**/ 1, C('a'), C('b'), C('c'), C('d')], b1.Inputs);
        Assert.Equal([C('a'), C('b'), C('c'), C('d'), 2, /**/ C('a'), C('b'), C('c'), C('d'), C('e')], b1.Labels);
        Assert.Equal(new DataState(1, 0), loader.State);
    }

    [Theory]
    [InlineData(1, 4, 0UL)]
    [InlineData(3, 6, 9UL)]
    [InlineData(4, 100, 5UL)]
    public void BucketsHoldEveryExampleOncePerEpoch(int batchSize, int seqLen, ulong seed)
    {
        var examples = UniqueRuns(Lengths);   // the length-1 example has no target and is skipped
        var loader = new DataLoader(examples, new BatchOptions(batchSize, seqLen, BatchMode.LengthBuckets, Seed: seed), padId: 0);
        for (int epoch = 0; epoch < 3; epoch++)
        {
            var firsts = new List<int>();
            foreach (var b in loader.EpochBatches(epoch))
            {
                for (int r = 0; r < b.Rows; r++)
                {
                    var e = examples.Single(x => x.Ids[0] == b.Inputs[r * b.SeqLen]);
                    firsts.Add(e.Ids[0]);
                    int n = Math.Min(e.Ids.Length, seqLen + 1) - 1;
                    for (int t = 0; t < b.SeqLen; t++)
                    {
                        int k = r * b.SeqLen + t;
                        Assert.Equal(t < n ? e.Ids[t] : 0, b.Inputs[k]);
                        Assert.Equal(t < n && e.Trained[t + 1] ? e.Ids[t + 1] : I, b.Labels[k]);
                    }
                }
                Assert.True(b.SeqLen <= seqLen);
            }
            Assert.Equal(examples.Where(e => e.Ids.Length >= 2).Select(e => e.Ids[0]).Order(), firsts.Order());
        }
    }

    private static List<int[]> Run(DataLoader loader, int count) =>
        [.. Enumerable.Range(0, count).Select(_ => { var b = loader.Next(); return (int[])[b.SeqLen, .. b.Inputs, .. b.Labels]; })];

    [Theory]
    [InlineData(BatchMode.Packing)]
    [InlineData(BatchMode.LengthBuckets)]
    public void SameSeedSameOrderDifferentSeedDifferentOrder(BatchMode mode)
    {
        var examples = UniqueRuns(Lengths);
        DataLoader Make(ulong seed) => new(examples, new BatchOptions(2, 4, mode, Seed: seed), padId: 0);
        int n = 3 * Make(0).BatchesPerEpoch;
        Assert.Equal(Run(Make(11), n), Run(Make(11), n));
        Assert.NotEqual(Run(Make(11), n), Run(Make(12), n));
        // Epochs differ from each other too.
        var loader = Make(11);
        Assert.NotEqual(loader.EpochBatches(0).Select(b => b.Inputs), loader.EpochBatches(1).Select(b => b.Inputs));
    }

    [Theory]
    [InlineData(BatchMode.Packing, 5)]
    [InlineData(BatchMode.Packing, 13)]
    [InlineData(BatchMode.LengthBuckets, 4)]
    [InlineData(BatchMode.LengthBuckets, 9)]
    public void ResumingFromSavedStateContinuesExactly(BatchMode mode, int stopAfter)
    {
        var examples = UniqueRuns(Lengths);
        var options = new BatchOptions(2, 4, mode, Seed: 3);
        var uninterrupted = Run(new DataLoader(examples, options, 0), 30);

        var first = new DataLoader(examples, options, 0);
        var before = Run(first, stopAfter);
        using var dir = TestData.Temp();
        first.State.Save(dir.File("data_state.json"));

        var resumed = new DataLoader(examples, options, 0);
        resumed.Restore(DataState.Load(dir.File("data_state.json")));
        Assert.Equal(first.State, resumed.State);
        var after = Run(resumed, 30 - stopAfter);
        Assert.Equal(uninterrupted, [.. before, .. after]);
    }

    [Fact]
    public void UntilEpochStopsAtTheEpochBoundaryAndStateRollsOver()
    {
        var loader = new DataLoader(UniqueRuns(Lengths), new BatchOptions(3, 4), padId: 0);
        int perEpoch = loader.BatchesPerEpoch;
        var batches = loader.UntilEpoch(2).ToList();
        Assert.Equal(2 * perEpoch, batches.Count);
        Assert.Equal(new DataState(2, 0), loader.State);
        Assert.Equal(Enumerable.Range(0, perEpoch).Select(i => new DataState(1, i)), batches.Skip(perEpoch).Select(b => b.Position));
        loader.Restore(new DataState(4, perEpoch));   // "end of epoch 4" is normalised to the start of epoch 5
        Assert.Equal(new DataState(5, 0), loader.State);
        Assert.Throws<ArgumentOutOfRangeException>(() => loader.Restore(new DataState(0, perEpoch + 1)));
    }

    [Fact]
    public void DropLastDropsThePartialBatch()
    {
        var examples = UniqueRuns(Lengths);   // 60 tokens -> 59 inputs -> 15 rows of 4
        Assert.Equal(4, new DataLoader(examples, new BatchOptions(4, 4), 0).BatchesPerEpoch);
        Assert.Equal(3, new DataLoader(examples, new BatchOptions(4, 4, DropLast: true), 0).BatchesPerEpoch);
    }

    [Fact]
    public void DataTooSmallForABatchIsAClearError()
    {
        var e = Assert.Throws<ArgumentException>(() => new DataLoader(UniqueRuns([1]), new BatchOptions(2, 4), 0));
        Assert.Contains("no batch", e.Message);
    }

    [Fact]
    public void DataStateJsonRoundTripsAndRejectsGarbage()
    {
        var s = new DataState(3, 17);
        Assert.Equal("{\"epoch\":3,\"index\":17}", s.ToJson());
        Assert.Equal(s, DataState.FromJson(s.ToJson()));
        Assert.Throws<FormatException>(() => DataState.FromJson("{\"epoch\": 1}"));
        Assert.Throws<FormatException>(() => DataState.FromJson("{\"epoch\": -1, \"index\": 0}"));
        Assert.Throws<FormatException>(() => DataState.FromJson("not json"));
    }
}
