namespace Kiln.LoRA.IO;

/// <summary>Named tensors that can be listed, described and loaded one at a time (a file, or a sharded model).</summary>
public interface ITensorReader : IDisposable
{
    /// <summary>Every tensor name, in the order the source lists them.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>True when a tensor of that name exists.</summary>
    bool Contains(string name);

    /// <summary>The tensor's header entry; <see cref="KeyNotFoundException"/> (with close names) if absent.</summary>
    TensorInfo Info(string name);

    /// <summary>
    /// A realised tensor with a copy of the stored values, in its stored dtype or converted to
    /// <paramref name="convertTo"/> (float to float, or a widening integer conversion).
    /// </summary>
    Tensor Load(string name, DType? convertTo = null);
}
