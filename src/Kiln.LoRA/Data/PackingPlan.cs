namespace Kiln.LoRA.Data;

/// <summary>One epoch of <see cref="BatchMode.Packing"/>: the shuffled concatenated stream and its row order.</summary>
internal sealed class PackingPlan : EpochPlan
{
    private readonly int[] _stream;
    private readonly bool[] _trained;
    private readonly int _seqLen, _padId;

    private PackingPlan(int epoch, int[][] batches, int[] stream, bool[] trained, int seqLen, int padId) : base(epoch, batches)
    {
        _stream = stream;
        _trained = trained;
        _seqLen = seqLen;
        _padId = padId;
    }

    public static PackingPlan Create(IReadOnlyList<TokenizedExample> examples, BatchOptions options, int padId, int epoch)
    {
        var rng = SplitMix64.ForEpoch(options.Seed, epoch);
        int[] order = [.. Enumerable.Range(0, examples.Count)];
        if (options.Shuffle) rng.Shuffle(order.AsSpan());

        long total = examples.Sum(e => (long)e.Ids.Length);
        if (total > Array.MaxLength) throw new ArgumentException($"{total} tokens do not fit one packed stream", nameof(examples));
        var stream = new int[total];
        var trained = new bool[total];
        int at = 0;
        foreach (int i in order)
        {
            examples[i].Ids.CopyTo(stream, at);
            examples[i].Trained.CopyTo(trained, at);
            at += examples[i].Ids.Length;
        }

        // Positions 0..N-2 are inputs (each has a next token); ceil((N-1)/L) rows cover them.
        int inputs = Math.Max(0, stream.Length - 1);
        int rowCount = (inputs + options.SeqLen - 1) / options.SeqLen;
        int[] rows = [.. Enumerable.Range(0, rowCount)];
        if (options.Shuffle) rng.Shuffle(rows.AsSpan());
        return new PackingPlan(epoch, DataLoader.Chunk(rows, options.BatchSize, options.DropLast), stream, trained, options.SeqLen, padId);
    }

    public override Batch Build(int index, DataState position)
    {
        var rows = Batches[index];
        int l = _seqLen;
        var inputs = new int[rows.Length * l];
        var labels = new int[rows.Length * l];
        int trainedTokens = 0, totalTokens = 0;
        for (int r = 0; r < rows.Length; r++)
        {
            long start = (long)rows[r] * l;
            for (int t = 0; t < l; t++)
            {
                long pos = start + t;
                int k = r * l + t;
                if (pos + 1 < _stream.Length)
                {
                    inputs[k] = _stream[pos];
                    totalTokens++;
                    if (_trained[pos + 1]) { labels[k] = _stream[pos + 1]; trainedTokens++; }
                    else labels[k] = Batch.Ignore;
                }
                else
                {
                    inputs[k] = _padId;
                    labels[k] = Batch.Ignore;
                }
            }
        }
        return new Batch(rows.Length, l, inputs, labels, trainedTokens, totalTokens, position);
    }
}
