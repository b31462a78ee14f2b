namespace Kiln.LoRA.IO;

/// <summary>
/// One tensor's entry in a safetensors header, already validated against the file.
/// </summary>
/// <param name="Name">The tensor's name in the file.</param>
/// <param name="FileDType">The dtype string as written in the header ("F32", "BF16", ...).</param>
/// <param name="DType">The Kiln dtype <c>Load</c> returns by default; null if Kiln cannot hold this dtype.</param>
/// <param name="Shape">The dimensions (empty for a scalar).</param>
/// <param name="Begin">Start of the data, in bytes from the start of the data section (after the header).</param>
/// <param name="End">End (exclusive) of the data, relative to the data section like <paramref name="Begin"/>.</param>
public sealed record TensorInfo(string Name, string FileDType, DType? DType, IReadOnlyList<int> Shape, long Begin, long End)
{
    /// <summary>Number of elements (1 for a scalar).</summary>
    public long Numel => Shape.Aggregate(1L, (n, d) => n * d);

    /// <summary>Size of the data in bytes.</summary>
    public long ByteLength => End - Begin;

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {FileDType}[{string.Join(", ", Shape)}] @[{Begin}, {End})";
}
