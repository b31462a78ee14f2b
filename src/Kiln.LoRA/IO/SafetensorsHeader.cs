// Parsing and validating a safetensors header. Everything a reader later relies on (dtype, sizes, offsets
// inside the file, no overlaps) is checked here once, so Load can copy bytes without further checks.
using System.Text.Json;

namespace Kiln.LoRA.IO;

/// <summary>The validated header of a safetensors file: tensor entries, metadata and where the data starts.</summary>
internal sealed class SafetensorsHeader
{
    /// <summary>Headers above this are rejected as corrupt before anything is allocated (the Python library uses 100 MB too).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public required IReadOnlyList<TensorInfo> Tensors { get; init; }
    public required IReadOnlyDictionary<string, TensorInfo> ByName { get; init; }
    public required IReadOnlyDictionary<string, string> Metadata { get; init; }

    /// <summary>Offset of the data section in the file (8 + header length).</summary>
    public required long DataStart { get; init; }

    /// <summary>Parses the header of <paramref name="file"/>, whose <paramref name="fileLength"/> bytes start at <paramref name="content"/>.</summary>
    /// <param name="file">The file's path, used in error messages only.</param>
    /// <remarks>A pointer rather than a span because model files are often larger than a span can address (2 GB).</remarks>
    public static unsafe SafetensorsHeader Parse(string file, byte* content, long fileLength)
    {
        if (fileLength < 8)
            throw Fail(file, $"file is {fileLength} bytes, too short to hold the 8-byte header length (truncated?)");
        ulong headerLength = BitConverter.ToUInt64(new ReadOnlySpan<byte>(content, 8)); // little-endian, like the host
        if (headerLength > MaxHeaderBytes)
            throw Fail(file, $"header length {headerLength} bytes is absurd (limit {MaxHeaderBytes}); not a safetensors file or corrupt");
        if (8 + (long)headerLength > fileLength)
            throw Fail(file, $"header length {headerLength} bytes runs past the end of the file ({fileLength} bytes; truncated?)");

        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;
        using var doc = ParseJson(file, new ReadOnlySpan<byte>(content + 8, (int)headerLength));
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw Fail(file, $"header is a JSON {doc.RootElement.ValueKind}, expected an object");

        var tensors = new List<TensorInfo>();
        var byName = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        IReadOnlyDictionary<string, string> metadata = new Dictionary<string, string>();
        bool sawMetadata = false;
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (sawMetadata) throw Fail(file, "__metadata__ appears twice in the header");
                sawMetadata = true;
                metadata = ParseMetadata(file, prop.Value);
                continue;
            }
            var info = ParseEntry(file, prop.Name, prop.Value, dataLength);
            if (!byName.TryAdd(info.Name, info)) throw Fail(file, $"tensor '{info.Name}' appears twice in the header");
            tensors.Add(info);
        }
        CheckLayout(file, tensors, dataLength);
        return new SafetensorsHeader { Tensors = tensors, ByName = byName, Metadata = metadata, DataStart = dataStart };
    }

    private static JsonDocument ParseJson(string file, ReadOnlySpan<byte> json)
    {
        // JsonDocument checks UTF-8 inside strings only when they are read, as an InvalidOperationException
        // far from here; checking the whole header first keeps every failure an InvalidDataException.
        if (!System.Text.Unicode.Utf8.IsValid(json)) throw Fail(file, "header is not valid JSON (invalid UTF-8)");
        try
        {
            return JsonDocument.Parse(json.ToArray());
        }
        catch (JsonException e)
        {
            throw Fail(file, $"header is not valid JSON ({e.Message})", e);
        }
    }

    private static Dictionary<string, string> ParseMetadata(string file, JsonElement element)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (element.ValueKind == JsonValueKind.Null) return metadata;
        if (element.ValueKind != JsonValueKind.Object)
            throw Fail(file, $"__metadata__ is a JSON {element.ValueKind}, expected an object of strings");
        foreach (var p in element.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
                throw Fail(file, $"__metadata__ entry '{p.Name}' is a JSON {p.Value.ValueKind}, expected a string");
            if (!metadata.TryAdd(p.Name, p.Value.GetString()!)) throw Fail(file, $"__metadata__ entry '{p.Name}' appears twice");
        }
        return metadata;
    }

    private static TensorInfo ParseEntry(string file, string name, JsonElement e, long dataLength)
    {
        string where = $"tensor '{name}'";
        if (e.ValueKind != JsonValueKind.Object)
            throw Fail(file, $"{where}: entry is a JSON {e.ValueKind}, expected an object with dtype, shape and data_offsets");

        if (!e.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
            throw Fail(file, $"{where}: missing or non-string 'dtype'");
        string dtype = dtypeEl.GetString()!;
        if (!SafetensorsDTypes.IsKnown(dtype))
            throw Fail(file, $"{where}: unknown dtype '{dtype}' (known: {SafetensorsDTypes.KnownList})");

        if (!e.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw Fail(file, $"{where}: missing 'shape' or not an array");
        var shape = new int[shapeEl.GetArrayLength()];
        int k = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v))
                throw Fail(file, $"{where}: shape {shapeEl.GetRawText()} has a non-integer dimension {d.GetRawText()}");
            if (v < 0) throw Fail(file, $"{where}: shape {shapeEl.GetRawText()} has a negative dimension {v}");
            if (v > int.MaxValue) throw Fail(file, $"{where}: shape {shapeEl.GetRawText()} has a dimension {v} above {int.MaxValue}");
            shape[k++] = (int)v;
        }

        if (!e.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw Fail(file, $"{where}: data_offsets must be an array [begin, end], found {(offEl.ValueKind == JsonValueKind.Undefined ? "nothing" : offEl.GetRawText())}");
        long begin = Offset(file, where, offEl, offEl[0]), end = Offset(file, where, offEl, offEl[1]);
        if (end < begin) throw Fail(file, $"{where}: data_offsets [{begin}, {end}] end before begin");

        long expected = ByteSize(file, where, shape, SafetensorsDTypes.ElementSize(dtype));
        if (end - begin != expected)
            throw Fail(file, $"{where}: data_offsets [{begin}, {end}] span {end - begin} bytes but {dtype}[{string.Join(", ", shape)}] needs {expected}");
        if (end > dataLength)
            throw Fail(file, $"{where}: data_offsets [{begin}, {end}] run past the end of the data section ({dataLength} bytes; truncated?)");
        return new TensorInfo(name, dtype, SafetensorsDTypes.ToKiln(dtype), shape, begin, end);
    }

    private static long Offset(string file, string where, JsonElement array, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x) || x < 0)
            throw Fail(file, $"{where}: data_offsets {array.GetRawText()} must hold two non-negative integers, found {v.GetRawText()}");
        return x;
    }

    private static long ByteSize(string file, string where, int[] shape, int elementSize)
    {
        try
        {
            long n = elementSize;
            foreach (int d in shape) n = checked(n * d);
            return n;
        }
        catch (OverflowException)
        {
            throw Fail(file, $"{where}: shape [{string.Join(", ", shape)}] is too large to address");
        }
    }

    /// <summary>The format requires the tensors to tile the data section exactly: no overlap, no gap, nothing after.</summary>
    private static void CheckLayout(string file, List<TensorInfo> tensors, long dataLength)
    {
        // Zero-size tensors occupy no bytes and cannot overlap anything, whatever their offset.
        var sorted = tensors.Where(t => t.End > t.Begin).OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        long cursor = 0;
        TensorInfo? previous = null;
        foreach (var t in sorted)
        {
            if (t.Begin < cursor)
                throw Fail(file, $"tensor '{t.Name}' data [{t.Begin}, {t.End}) overlaps tensor '{previous!.Name}' [{previous.Begin}, {previous.End})");
            if (t.Begin > cursor)
                throw Fail(file, previous == null
                    ? $"the data section starts with {t.Begin} unused bytes before tensor '{t.Name}'"
                    : $"{t.Begin - cursor} unused bytes between tensor '{previous.Name}' (ends at {cursor}) and tensor '{t.Name}' (begins at {t.Begin})");
            cursor = t.End;
            previous = t;
        }
        if (cursor != dataLength)
            throw Fail(file, $"{dataLength - cursor} bytes after the last tensor's data (data section {dataLength} bytes, tensors end at {cursor})");
    }

    internal static InvalidDataException Fail(string file, string message, Exception? inner = null) =>
        new($"safetensors file '{file}': {message}", inner);
}
