using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace Kiln.LoRA.Tests.IO;

/// <summary>Byte-level helpers for building (and breaking) safetensors files in tests, independent of the reader.</summary>
internal static class SafetensorsTestFiles
{
    public static string LlamaTiny => TestData.File("hf", "llama_tiny", "model", "model.safetensors");

    /// <summary>The header length, header JSON text and data section of a file's bytes.</summary>
    public static (string Json, byte[] Data) Split(byte[] file)
    {
        int n = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(file));
        return (Encoding.UTF8.GetString(file, 8, n), file[(8 + n)..]);
    }

    /// <summary>A file made of <paramref name="json"/> (not padded, so any text can be tested) and <paramref name="data"/>.</summary>
    public static byte[] Build(string json, byte[] data)
    {
        var header = Encoding.UTF8.GetBytes(json);
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        data.CopyTo(file, 8 + header.Length);
        return file;
    }

    /// <summary>The real llama_tiny file with its header edited by <paramref name="edit"/> and the data unchanged.</summary>
    public static byte[] EditHeader(Action<JsonObject> edit)
    {
        var (json, data) = Split(File.ReadAllBytes(LlamaTiny));
        var header = JsonNode.Parse(json)!.AsObject();
        edit(header);
        return Build(header.ToJsonString(), data);
    }
}
