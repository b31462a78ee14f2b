namespace Kiln.LoRA.Data;

/// <summary>Endless, resumable, seeded stream of <see cref="Batch"/>es over tokenized examples.</summary>
/// <remarks>
/// Each epoch's order is a pure function of (<see cref="BatchOptions.Seed"/>, epoch) through
/// <see cref="SplitMix64.ForEpoch"/>, so <see cref="State"/> (epoch, batch index) fully describes the position:
/// save it with a checkpoint, <see cref="Restore"/> it in a new process and the following batches are exactly
/// those an uninterrupted run would have produced. Every epoch has the same number of batches.
/// <para>Packing: documents are shuffled, concatenated into one stream S of N tokens, and row k is
/// inputs <c>S[k*L .. k*L+L)</c>, labels <c>S[k*L+1 .. k*L+L+1)</c> (windows of L+1 tokens overlapping by one,
/// so every token is an input once and a target once per epoch; the last row is padded). Rows are then shuffled
/// and grouped into batches.</para>
/// <para>Length buckets: examples are shuffled, stably sorted by (truncated) length so ties stay shuffled,
/// cut into batches of BatchSize consecutive examples, and the batch order is shuffled. Examples with fewer
/// than two tokens have no target and are skipped.</para>
/// </remarks>
public sealed class DataLoader
{
    private readonly IReadOnlyList<TokenizedExample> _examples;
    private readonly BatchOptions _options;
    private readonly int _padId;
    private EpochPlan? _plan;

    /// <param name="examples">Tokenized documents (see <see cref="ExampleTokenizer"/>).</param>
    /// <param name="options">Batch shape, mode and shuffling.</param>
    /// <param name="padId">Input id of padding positions (their labels are always <see cref="Batch.Ignore"/>);
    /// usually the tokenizer's EOS, or 0 when it has none.</param>
    /// <exception cref="ArgumentException">Settings out of range, or data too small for even one batch.</exception>
    public DataLoader(IReadOnlyList<TokenizedExample> examples, BatchOptions options, int padId)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BatchSize, 1, nameof(options.BatchSize));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.SeqLen, 1, nameof(options.SeqLen));
        _examples = examples;
        _options = options;
        _padId = padId;
        BatchesPerEpoch = PlanFor(0).BatchCount;
        if (BatchesPerEpoch == 0)
            throw new ArgumentException(
                $"the data gives no batch: {examples.Count} examples, {examples.Sum(e => (long)e.Ids.Length)} tokens " +
                $"(batch size {options.BatchSize}, seq len {options.SeqLen}, drop last {options.DropLast})", nameof(examples));
    }

    /// <summary>Batches in each epoch.</summary>
    public int BatchesPerEpoch { get; }

    /// <summary>The position of the next batch <see cref="Next"/> returns; after an epoch's last batch this is
    /// (epoch + 1, 0).</summary>
    public DataState State { get; private set; } = DataState.Start;

    /// <summary>Continues from a saved <see cref="State"/>.</summary>
    public void Restore(DataState state)
    {
        if (state.Epoch < 0 || state.Index < 0 || state.Index > BatchesPerEpoch)
            throw new ArgumentOutOfRangeException(nameof(state), state, $"index must be in [0, {BatchesPerEpoch}] (batches per epoch)");
        State = state.Index == BatchesPerEpoch ? new DataState(state.Epoch + 1, 0) : state;
    }

    /// <summary>The batch at <see cref="State"/>; advances the state.</summary>
    public Batch Next()
    {
        var batch = BatchAt(State);
        State = State.Index + 1 == BatchesPerEpoch ? new DataState(State.Epoch + 1, 0) : State with { Index = State.Index + 1 };
        return batch;
    }

    /// <summary>Calls <see cref="Next"/> until epoch <paramref name="epochs"/> is reached (i.e. trains
    /// <paramref name="epochs"/> epochs in total, counting those already done before a restore).</summary>
    public IEnumerable<Batch> UntilEpoch(int epochs)
    {
        while (State.Epoch < epochs) yield return Next();
    }

    /// <summary>All batches of one epoch, without touching <see cref="State"/> (e.g. a validation pass).</summary>
    public IEnumerable<Batch> EpochBatches(int epoch)
    {
        for (int i = 0; i < BatchesPerEpoch; i++) yield return BatchAt(new DataState(epoch, i));
    }

    /// <summary>The batch at a given position (a pure function of the position).</summary>
    public Batch BatchAt(DataState position)
    {
        if (position.Index < 0 || position.Index >= BatchesPerEpoch)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"index must be in [0, {BatchesPerEpoch})");
        if (_plan is null || _plan.Epoch != position.Epoch) _plan = PlanFor(position.Epoch);
        return _plan.Build(position.Index, position);
    }

    private EpochPlan PlanFor(int epoch) => _options.Mode switch
    {
        BatchMode.Packing => PackingPlan.Create(_examples, _options, _padId, epoch),
        BatchMode.LengthBuckets => BucketPlan.Create(_examples, _options, _padId, epoch),
        _ => throw new ArgumentOutOfRangeException(nameof(_options.Mode), _options.Mode, "unknown batch mode"),
    };

    /// <summary>Groups <paramref name="count"/> rows into batches of <paramref name="batchSize"/>.</summary>
    internal static int[][] Chunk(int[] rows, int batchSize, bool dropLast)
    {
        int full = rows.Length / batchSize, rest = rows.Length % batchSize;
        int n = full + (rest > 0 && !dropLast ? 1 : 0);
        var batches = new int[n][];
        for (int b = 0; b < n; b++) batches[b] = rows[(b * batchSize)..Math.Min(rows.Length, (b + 1) * batchSize)];
        return batches;
    }
}

/// <summary>The order of one epoch: which rows each batch holds.</summary>
internal abstract class EpochPlan(int epoch, int[][] batches)
{
    public int Epoch { get; } = epoch;
    protected int[][] Batches { get; } = batches;
    public int BatchCount => Batches.Length;
    public abstract Batch Build(int index, DataState position);
}
