using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Kiln.LoRA.IO;

namespace Kiln.LoRA.Tests.IO;

/// <summary>Broken variants of a real file: each must be an InvalidDataException that says what is wrong, never another exception.</summary>
public class CorruptSafetensorsTests
{
    private const string Q = "model.layers.0.self_attn.q_proj.weight";   // F32 [64, 64], a tensor in the middle of the file

    /// <summary>Opens <paramref name="bytes"/> as a file and loads every tensor; returns the exception's message.</summary>
    private static string OpenFails(byte[] bytes, params string[] expectedFragments)
    {
        using var dir = TestData.Temp();
        string path = dir.File("broken.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => { using var f = SafetensorsFile.Open(path); foreach (var n in f.Names) f.Load(n).Dispose(); });
        Assert.Contains("broken.safetensors", e.Message);
        foreach (var fragment in expectedFragments) Assert.Contains(fragment, e.Message);
        return e.Message;
    }

    private static byte[] Real => File.ReadAllBytes(SafetensorsTestFiles.LlamaTiny);

    [Fact]
    public void TruncationAnywhereIsReported()
    {
        byte[] real = Real;
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(real);
        Assert.Contains("too short", OpenFails([]));
        foreach (int length in new[] { 1, 7 }) OpenFails(real[..length], "too short", $"{length} bytes");
        foreach (int length in new[] { 8, 100, headerEnd - 1 }) OpenFails(real[..length], "runs past the end of the file", $"({length} bytes");
        foreach (int length in new[] { headerEnd, headerEnd + 1, real.Length / 2, real.Length - 1 }) OpenFails(real[..length], "run past the end of the data section");
    }

    [Fact]
    public void TrailingBytesAreRejected() => OpenFails([.. Real, 0, 0, 0, 0], "4 bytes after the last tensor");

    [Theory]
    [InlineData(ulong.MaxValue, "absurd")]
    [InlineData(200_000_000UL, "absurd")]
    [InlineData(1_000_000UL, "runs past the end of the file")]
    [InlineData(0UL, "not valid JSON")]
    [InlineData(100UL, "not valid JSON")]           // cuts the JSON short
    public void CorruptHeaderLength(ulong headerLength, string expected)
    {
        byte[] bytes = Real;
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength);
        OpenFails(bytes, expected);
    }

    [Theory]
    [InlineData("this is not json", "not valid JSON")]
    [InlineData("[1, 2, 3]", "expected an object")]
    [InlineData("\"text\"", "expected an object")]
    [InlineData("{\"a\": 5}", "tensor 'a'", "expected an object")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", "tensor 'a'", "data_offsets")]
    [InlineData("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", "tensor 'a'", "dtype")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", "tensor 'a'", "shape")]
    [InlineData("{\"__metadata__\": {\"format\": 1}}", "__metadata__", "'format'")]
    [InlineData("{\"__metadata__\": [1]}", "__metadata__")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", "tensor 'a'", "1.5")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", "'a' appears twice")]
    public void MalformedHeaders(string json, params string[] expected) => OpenFails(SafetensorsTestFiles.Build(json, new byte[4]), expected);

    [Fact]
    public void InvalidUtf8Header() => OpenFails(SafetensorsTestFiles.Build("{\"a\":1}", []).Select((b, i) => i == 10 ? (byte)0xFF : b).ToArray(), "not valid JSON");

    [Fact]
    public void UnknownDType() => OpenFails(SafetensorsTestFiles.EditHeader(h => h[Q]!["dtype"] = "F33"), Q, "unknown dtype 'F33'");

    [Fact]
    public void NegativeDimension() => OpenFails(SafetensorsTestFiles.EditHeader(h => h[Q]!["shape"] = new JsonArray(-64, -64)), Q, "negative dimension -64");

    [Fact]
    public void ShapeThatOverflows() => OpenFails(SafetensorsTestFiles.EditHeader(h => h[Q]!["shape"] = new JsonArray(int.MaxValue, int.MaxValue, int.MaxValue)), Q, "too large");

    [Fact]
    public void ByteSizeDisagreesWithShape() => OpenFails(SafetensorsTestFiles.EditHeader(h => h[Q]!["shape"] = new JsonArray(64, 63)), Q, "needs 16128");

    [Theory]
    [InlineData("[0]")]
    [InlineData("[0, 4, 8]")]
    [InlineData("[-4, 0]")]
    [InlineData("[\"0\", \"4\"]")]
    [InlineData("[0, 1e30]")]
    [InlineData("{\"begin\": 0}")]
    public void OffsetsThatAreNotAPair(string offsets) =>
        OpenFails(SafetensorsTestFiles.EditHeader(h => h[Q]!["data_offsets"] = JsonNode.Parse(offsets)), Q, "data_offsets");

    [Fact]
    public void EndBeforeBegin() => OpenFails(SafetensorsTestFiles.EditHeader(h => h[Q]!["data_offsets"] = new JsonArray(16384, 0)), Q, "[16384, 0]", "end before begin");

    [Fact]
    public void OffsetsPastTheEnd()
    {
        long dataLength = SafetensorsTestFiles.Split(Real).Data.Length;
        OpenFails(SafetensorsTestFiles.EditHeader(h => h[Q]!["data_offsets"] = new JsonArray(dataLength, dataLength + 16384)), Q, $"[{dataLength}, {dataLength + 16384}]", "past the end of the data section");
        OpenFails(SafetensorsTestFiles.EditHeader(h => h[Q]!["data_offsets"] = new JsonArray(long.MaxValue - 16384, long.MaxValue)), Q, "past the end");
    }

    [Fact]
    public void OverlappingTensors()
    {
        // Point q_proj at the first tensor's bytes (lm_head [0, 131072) holds more than 16384 bytes).
        string message = OpenFails(SafetensorsTestFiles.EditHeader(h => h[Q]!["data_offsets"] = new JsonArray(1024, 1024 + 16384)), "overlaps");
        Assert.Contains("lm_head.weight", message);
        Assert.Contains(Q, message);
    }

    [Fact]
    public void GapInTheData()
    {
        // The format forbids unindexed bytes (they would let a file carry hidden content).
        string json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
        OpenFails(SafetensorsTestFiles.Build(json, new byte[8]), "4 unused bytes before tensor 'a'");
    }

    [Fact]
    public void RandomCorruptionNeverEscapesAsAnotherException()
    {
        // Flip bytes in the header and length prefix: every outcome is success or InvalidDataException.
        byte[] real = Real;
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(real);
        var rng = new Random(1234);
        using var dir = TestData.Temp();
        string path = dir.File("fuzz.safetensors");
        int rejected = 0;
        for (int trial = 0; trial < 300; trial++)
        {
            byte[] bytes = (byte[])real.Clone();
            for (int k = rng.Next(1, 4); k > 0; k--) bytes[rng.Next(headerEnd)] = (byte)rng.Next(256);
            if (rng.Next(4) == 0) bytes = bytes[..rng.Next(bytes.Length)];
            File.WriteAllBytes(path, bytes);
            try
            {
                using var f = SafetensorsFile.Open(path);
                foreach (var n in f.Names) f.Info(n);
                f.Load(f.Names[^1]).Dispose();
            }
            catch (InvalidDataException) { rejected++; }
        }
        Assert.InRange(rejected, 100, 300);   // most random damage must be caught, not silently accepted
    }

    [Fact]
    public void MessageIsReadable()
    {
        string message = OpenFails(SafetensorsTestFiles.EditHeader(h => h[Q]!["dtype"] = "F33"));
        Assert.StartsWith("safetensors file '", message);
        Assert.DoesNotContain("\n", message);
        Assert.Contains(Encoding.UTF8.GetString("F32"u8), message);   // lists the known names
    }
}
