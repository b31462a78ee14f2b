// Writing .safetensors files in the layout the Python library produces, so that files Kiln writes open
// everywhere (transformers, PEFT, candle) and files from there round-trip through Kiln unchanged.
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Kiln.LoRA.IO;

/// <summary>Saving tensors as a safetensors file.</summary>
public static class Safetensors
{
    /// <summary>
    /// Writes <paramref name="tensors"/> (realising any that are lazy) and <paramref name="metadata"/> to
    /// <paramref name="path"/>, atomically: on any failure, including one thrown by the enumeration itself,
    /// an existing file at <paramref name="path"/> is left as it was.
    /// </summary>
    /// <exception cref="ArgumentException">Duplicate or reserved (<c>__metadata__</c>) tensor names.</exception>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        AtomicFile.Write(path, stream => Write(stream, tensors, metadata));
    }

    /// <summary>Writes the safetensors bytes to a stream (<see cref="Save"/> without the file handling).</summary>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var entries = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            ArgumentNullException.ThrowIfNull(tensor, name);
            if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved for the header's metadata and cannot name a tensor", nameof(tensors));
            if (!entries.TryAdd(name, tensor)) throw new ArgumentException($"tensor name '{name}' appears twice", nameof(tensors));
        }

        // Like the Python library: data ordered by element size, largest first (so every tensor starts at an
        // offset aligned to its element size, the header being padded to 8), then by name.
        var dataOrder = entries.OrderByDescending(e => e.Value.DType.SizeInBytes()).ThenBy(e => e.Key, StringComparer.Ordinal).ToList();
        var offsets = new Dictionary<string, (long Begin, long End)>(StringComparer.Ordinal);
        long cursor = 0;
        foreach (var (name, t) in dataOrder)
        {
            long bytes = t.Numel * t.DType.SizeInBytes();
            offsets[name] = (cursor, cursor + bytes);
            cursor += bytes;
        }

        byte[] header = Header(entries, offsets, metadata);
        stream.Write(BitConverter.GetBytes((ulong)header.Length));
        stream.Write(header);
        foreach (var (_, t) in dataOrder) TensorBytes.Write(stream, t);
    }

    /// <summary>The JSON header, keys sorted by name, padded with spaces to a multiple of 8 bytes.</summary>
    private static byte[] Header(Dictionary<string, Tensor> entries, Dictionary<string, (long Begin, long End)> offsets, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        // Relaxed escaping keeps non-ASCII names readable (the default escaper would write "\u00E9"); still valid JSON.
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
                w.WriteEndObject();
            }
            foreach (var (name, t) in entries.OrderBy(e => e.Key, StringComparer.Ordinal))
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", SafetensorsDTypes.FromKiln(t.DType));
                w.WriteStartArray("shape");
                foreach (int d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offsets[name].Begin);
                w.WriteNumberValue(offsets[name].End);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int padding = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }
}
