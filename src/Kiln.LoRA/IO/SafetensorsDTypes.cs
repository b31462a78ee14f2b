// The safetensors dtype names and how each maps onto a Kiln DType.
namespace Kiln.LoRA.IO;

/// <summary>
/// Safetensors dtype strings ("F32", "BF16", ...). Every name the format defines is recognised, so a file
/// that holds, say, an F8 tensor still opens and its other tensors load; only types Kiln cannot represent
/// without loss (U64, the F8 variants) fail, and only when that tensor is loaded.
/// </summary>
public static class SafetensorsDTypes
{
    /// <summary>Bytes per element, for every dtype name the safetensors format defines.</summary>
    private static readonly Dictionary<string, int> ElementSizes = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1,
        ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4,
        ["I64"] = 8, ["U64"] = 8, ["F64"] = 8,
    };

    /// <summary>True when <paramref name="name"/> is a dtype the safetensors format defines.</summary>
    public static bool IsKnown(string name) => ElementSizes.ContainsKey(name);

    /// <summary>Bytes per element of a known safetensors dtype.</summary>
    public static int ElementSize(string name) =>
        ElementSizes.TryGetValue(name, out int size) ? size : throw new ArgumentException($"'{name}' is not a safetensors dtype", nameof(name));

    /// <summary>
    /// The Kiln dtype a tensor of this safetensors dtype loads as, or null when Kiln cannot hold it exactly.
    /// Narrow integers widen (U8/I8/I16/U16 to Int32, U32 to Int64) because Kiln has no narrower ones.
    /// </summary>
    public static DType? ToKiln(string name) => name switch
    {
        "F32" => DType.Float32, "F64" => DType.Float64, "BF16" => DType.BFloat16, "F16" => DType.Float16,
        "I32" => DType.Int32, "I64" => DType.Int64, "BOOL" => DType.Bool,
        "U8" or "I8" or "I16" or "U16" => DType.Int32,
        "U32" => DType.Int64,
        _ => null,
    };

    /// <summary>The safetensors name a Kiln dtype is written as.</summary>
    public static string FromKiln(DType dtype) => dtype switch
    {
        DType.Float32 => "F32", DType.Float64 => "F64", DType.BFloat16 => "BF16", DType.Float16 => "F16",
        DType.Int32 => "I32", DType.Int64 => "I64", DType.Bool => "BOOL",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "no safetensors name for this dtype"),
    };

    /// <summary>Every dtype name the format defines (for error messages).</summary>
    internal static string KnownList => string.Join(", ", ElementSizes.Keys);
}
