using System.Text;
using System.Text.Json;
using Kiln.LoRA.Training;

namespace Kiln.LoRA.Data;

/// <summary>Position of a <see cref="DataLoader"/>: the next batch to produce is batch <see cref="Index"/>
/// of epoch <see cref="Epoch"/> (both 0-based). Because each epoch's order is a pure function of the seed and
/// the epoch number, this pair is all a checkpoint needs to resume the exact same batch sequence.</summary>
public sealed record DataState(int Epoch, int Index)
{
    /// <summary>The start of training.</summary>
    public static DataState Start { get; } = new(0, 0);

    /// <summary><c>{"epoch": E, "index": I}</c></summary>
    public string ToJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("epoch", Epoch);
            w.WriteNumber("index", Index);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Parses <see cref="ToJson"/>'s output.</summary>
    /// <exception cref="FormatException">Not an object with non-negative integer "epoch" and "index".</exception>
    public static DataState FromJson(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            if (root.ValueKind == JsonValueKind.Object &&
                root.TryGetProperty("epoch", out var e) && e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int epoch) && epoch >= 0 &&
                root.TryGetProperty("index", out var i) && i.ValueKind == JsonValueKind.Number && i.TryGetInt32(out int index) && index >= 0)
                return new DataState(epoch, index);
        }
        catch (JsonException ex) { throw new FormatException($"data state is not valid JSON: {ex.Message}", ex); }
        throw new FormatException($"data state must be {{\"epoch\": int >= 0, \"index\": int >= 0}}; got {json}");
    }

    /// <summary>Writes the state to <paramref name="path"/> atomically.</summary>
    public void Save(string path) => Kiln.LoRA.IO.AtomicFile.WriteAllText(path, ToJson());

    /// <summary>Reads a state written by <see cref="Save"/>.</summary>
    public static DataState Load(string path) => FromJson(File.ReadAllText(path));
}
