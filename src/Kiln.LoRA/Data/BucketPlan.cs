namespace Kiln.LoRA.Data;

/// <summary>One epoch of <see cref="BatchMode.LengthBuckets"/>: which examples each batch holds.</summary>
internal sealed class BucketPlan : EpochPlan
{
    private readonly IReadOnlyList<TokenizedExample> _examples;
    private readonly int _seqLen, _padId;

    private BucketPlan(int epoch, int[][] batches, IReadOnlyList<TokenizedExample> examples, int seqLen, int padId) : base(epoch, batches)
    {
        _examples = examples;
        _seqLen = seqLen;
        _padId = padId;
    }

    public static BucketPlan Create(IReadOnlyList<TokenizedExample> examples, BatchOptions options, int padId, int epoch)
    {
        var rng = SplitMix64.ForEpoch(options.Seed, epoch);
        int[] order = [.. Enumerable.Range(0, examples.Count).Where(i => examples[i].Ids.Length >= 2)];
        if (options.Shuffle) rng.Shuffle(order.AsSpan());
        // OrderBy is a stable sort: examples of equal length keep their shuffled order, so batch contents vary
        // between epochs while padding stays minimal.
        int[] byLength = [.. order.OrderBy(i => RowLength(examples[i], options.SeqLen))];
        var batches = DataLoader.Chunk(byLength, options.BatchSize, options.DropLast);
        if (options.Shuffle) rng.Shuffle(batches.AsSpan());
        return new BucketPlan(epoch, batches, examples, options.SeqLen, padId);
    }

    /// <summary>Input positions of an example's row: its first min(len, L+1) tokens give min(len, L+1)-1 inputs.</summary>
    private static int RowLength(TokenizedExample e, int seqLen) => Math.Min(e.Ids.Length, seqLen + 1) - 1;

    public override Batch Build(int index, DataState position)
    {
        var members = Batches[index];
        int l = members.Max(i => RowLength(_examples[i], _seqLen));
        var inputs = new int[members.Length * l];
        var labels = new int[members.Length * l];
        int trainedTokens = 0, totalTokens = 0;
        for (int r = 0; r < members.Length; r++)
        {
            var e = _examples[members[r]];
            int n = RowLength(e, _seqLen);
            for (int t = 0; t < l; t++)
            {
                int k = r * l + t;
                if (t < n)
                {
                    inputs[k] = e.Ids[t];
                    totalTokens++;
                    if (e.Trained[t + 1]) { labels[k] = e.Ids[t + 1]; trainedTokens++; }
                    else labels[k] = Batch.Ignore;
                }
                else
                {
                    inputs[k] = _padId;
                    labels[k] = Batch.Ignore;
                }
            }
        }
        return new Batch(members.Length, l, inputs, labels, trainedTokens, totalTokens, position);
    }
}
