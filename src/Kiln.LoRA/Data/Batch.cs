namespace Kiln.LoRA.Data;

/// <summary>How documents become rows of a batch.</summary>
public enum BatchMode
{
    /// <summary>All documents are concatenated into one stream that is cut into rows of exactly SeqLen
    /// (documents may cross rows); no padding except in the stream's final row.</summary>
    Packing,

    /// <summary>One document per row, truncated to SeqLen+1 tokens; rows of similar length are batched
    /// together and padded to the longest row of their batch.</summary>
    LengthBuckets,
}

/// <summary>Batching settings.</summary>
/// <param name="BatchSize">Rows per batch (the epoch's last batch may have fewer unless <paramref name="DropLast"/>).</param>
/// <param name="SeqLen">Positions per row (the maximum, with <see cref="BatchMode.LengthBuckets"/>).</param>
/// <param name="Mode">Packing or length buckets.</param>
/// <param name="Seed">Seed of the per-epoch shuffle.</param>
/// <param name="Shuffle">False keeps file order (validation data).</param>
/// <param name="DropLast">Drop an epoch's final batch when it has fewer than BatchSize rows.</param>
public sealed record BatchOptions(int BatchSize, int SeqLen, BatchMode Mode = BatchMode.Packing, ulong Seed = 0,
    bool Shuffle = true, bool DropLast = false);

/// <summary>One batch, row-major (Rows, SeqLen). <c>Labels[r*SeqLen+t]</c> is the target for
/// <c>Inputs[r*SeqLen+t]</c>, i.e. the next token, or <see cref="Ignore"/> where there is no target
/// (masked prompt tokens, padding, a document's first token).</summary>
/// <param name="Rows">Number of rows.</param>
/// <param name="SeqLen">Positions per row.</param>
/// <param name="Inputs">Input ids; padding positions hold the pad id.</param>
/// <param name="Labels">Target ids or <see cref="Ignore"/>.</param>
/// <param name="TrainedTokens">Labels that are not <see cref="Ignore"/> (the loss's token count; use for tokens/s).</param>
/// <param name="TotalTokens">Input positions that are not padding.</param>
/// <param name="Position">Where in the data this batch was taken (its epoch and index within the epoch).</param>
public sealed record Batch(int Rows, int SeqLen, int[] Inputs, int[] Labels, int TrainedTokens, int TotalTokens, DataState Position)
{
    /// <summary>The label of a position without a target (the cross-entropy ignore index).</summary>
    public const int Ignore = -100;
}
