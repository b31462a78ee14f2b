using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Kiln.LoRA.IO;

namespace Kiln.LoRA.Tests.IO;

public class SafetensorsRoundTripTests
{
    // Values chosen to catch any conversion on the way: NaN payloads, -0, infinities, subnormals, extremes.
    private static readonly float[] Floats = [0f, -0f, 1.5f, -3.25e-30f, float.Epsilon, float.MaxValue, float.NegativeInfinity, BitConverter.UInt32BitsToSingle(0x7FC0_1234)];
    private static readonly double[] Doubles = [0, -0.0, Math.PI, double.Epsilon, double.MinValue, double.PositiveInfinity, BitConverter.UInt64BitsToDouble(0x7FF8_0000_0000_0ABC), 1e300];

    public static TheoryData<DType> AllDTypes => new(Enum.GetValues<DType>());

    private static Tensor Sample(DType dtype) => dtype switch
    {
        DType.Float32 => Tensor.FromArray(Floats, [2, 4]),
        DType.Float64 => Tensor.FromArray(Doubles, [2, 2, 2]),
        DType.BFloat16 => Tensor.FromArray(new ushort[] { 0, 0x8000, 0x3FC0, 0x7F80, 0xFF80, 0x0001, 0x7FC1, 0x4049 }.Select(BFloat16.FromBits).ToArray(), [4, 2]),
        DType.Float16 => Tensor.FromArray(new ushort[] { 0, 0x8000, 0x3C00, 0x7C00, 0xFC00, 0x0001, 0x7E01, 0x7BFF }.Select(BitConverter.UInt16BitsToHalf).ToArray(), [8]),
        DType.Int32 => Tensor.FromArray(new[] { 0, -1, int.MinValue, int.MaxValue, 42, 7 }, [3, 2]),
        DType.Int64 => Tensor.FromArray(new[] { 0L, -1, long.MinValue, long.MaxValue, 1L << 40 }, [5]),
        DType.Bool => Tensor.FromArray(new[] { true, false, false, true, true }, [5, 1]),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>The raw bits, so NaN payloads and -0 must survive exactly.</summary>
    private static byte[] Bits(Tensor t) => t.DType switch
    {
        DType.Float32 => MemoryMarshal.AsBytes(t.ToArray<float>().AsSpan()).ToArray(),
        DType.Float64 => MemoryMarshal.AsBytes(t.ToArray<double>().AsSpan()).ToArray(),
        DType.BFloat16 => MemoryMarshal.AsBytes(t.ToArray<BFloat16>().AsSpan()).ToArray(),
        DType.Float16 => MemoryMarshal.AsBytes(t.ToArray<Half>().AsSpan()).ToArray(),
        DType.Int32 => MemoryMarshal.AsBytes(t.ToArray<int>().AsSpan()).ToArray(),
        DType.Int64 => MemoryMarshal.AsBytes(t.ToArray<long>().AsSpan()).ToArray(),
        DType.Bool => t.ToArray<bool>().Select(b => b ? (byte)1 : (byte)0).ToArray(),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void EveryDTypeRoundTripsBitExact(DType dtype)
    {
        using var dir = TestData.Temp();
        var original = Sample(dtype);
        Safetensors.Save(dir.File("t.safetensors"), [new("x", original)]);
        using var file = SafetensorsFile.Open(dir.File("t.safetensors"));
        var info = file.Info("x");
        Assert.Equal(dtype, info.DType);
        Assert.Equal(SafetensorsDTypes.FromKiln(dtype), info.FileDType);
        using var loaded = file.Load("x");
        Assert.Equal(dtype, loaded.DType);
        Assert.Equal(original.Shape, loaded.Shape);
        Assert.True(loaded.IsRealised);
        Assert.Equal(Bits(original), Bits(loaded));
    }

    [Fact]
    public void AllDTypesInOneFileWithMetadata()
    {
        using var dir = TestData.Temp();
        var tensors = Enum.GetValues<DType>().ToDictionary(d => $"t.{d}", Sample);
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "héllo \"quoted\" ✓" };
        Safetensors.Save(dir.File("all.safetensors"), tensors, metadata);
        using var file = SafetensorsFile.Open(dir.File("all.safetensors"));
        Assert.Equal(metadata, file.Metadata);
        Assert.Equal(tensors.Keys.Order(StringComparer.Ordinal), file.Names);   // header sorted by name
        foreach (var (name, t) in tensors) Assert.Equal(Bits(t), Bits(file.Load(name)));
    }

    [Fact]
    public void LayoutMatchesThePythonLibrary()
    {
        using var dir = TestData.Temp();
        Safetensors.Save(dir.File("l.safetensors"), [new("b", Tensor.FromArray(new[] { 1f, 2f })), new("a", Tensor.FromArray(new[] { (Half)1 })), new("c", Tensor.FromArray(new[] { 3.0 }))],
            new Dictionary<string, string> { ["format"] = "pt" });
        var bytes = File.ReadAllBytes(dir.File("l.safetensors"));
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, n % 8);                                       // padded so the data section is 8-aligned
        string json = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.Equal("{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[16,18]},"
            + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},\"c\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", json.TrimEnd(' '));
        Assert.Equal(8 + (int)n + 18, bytes.Length);
        Assert.Equal(3.0, BitConverter.ToDouble(bytes, 8 + (int)n));    // largest elements first, as the library stores them
    }

    [Fact]
    public void ScalarsAndEmptyTensorsRoundTrip()
    {
        using var dir = TestData.Temp();
        Safetensors.Save(dir.File("e.safetensors"), [new("scalar", Tensor.Scalar(2.5)), new("empty", Tensor.Zeros([0, 3])), new("v", Tensor.FromArray(new[] { 7f }))]);
        using var file = SafetensorsFile.Open(dir.File("e.safetensors"));
        Assert.Empty(file.Info("scalar").Shape);
        Assert.Equal(2.5f, file.Load("scalar").Item<float>());
        Assert.Equal([0, 3], file.Load("empty").Shape);
        Assert.Equal([7f], file.Load("v").ToArray<float>());
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void LazyTensorsAreEvaluatedOnSave()
    {
        using var dir = TestData.Temp();
        var a = Tensor.FromArray(new[] { 1f, 2f, 3f });
        var sum = (a + a) * a;
        Assert.False(sum.IsRealised);
        Safetensors.Save(dir.File("lazy.safetensors"), [new("s", sum)]);
        using var file = SafetensorsFile.Open(dir.File("lazy.safetensors"));
        Assert.Equal([2f, 8f, 18f], file.Load("s").ToArray<float>());
    }

    [Fact]
    public void LoadConvertsFloatDTypesOnRequest()
    {
        using var dir = TestData.Temp();
        var bf = new[] { 1.5f, -2.25f, 3e10f }.Select(BFloat16.FromSingle).ToArray();
        Safetensors.Save(dir.File("c.safetensors"), [new("w", Tensor.FromArray(bf)), new("i", Tensor.FromArray(new[] { 1, 2 }))]);
        using var file = SafetensorsFile.Open(dir.File("c.safetensors"));
        using var f32 = file.Load("w", DType.Float32);
        Assert.Equal(DType.Float32, f32.DType);
        Assert.Equal(bf.Select(b => b.ToSingle()), f32.ToArray<float>());
        Assert.Equal(DType.Float64, file.Load("w", DType.Float64).DType);
        Assert.Equal([1L, 2L], file.Load("i", DType.Int64).ToArray<long>());
        var e = Assert.Throws<ArgumentException>(() => file.Load("i", DType.Float32));
        Assert.Contains("'i'", e.Message);
    }

    [Fact]
    public void ReservedAndDuplicateNamesAreRejected()
    {
        using var dir = TestData.Temp();
        var t = Tensor.FromArray(new[] { 1f });
        Assert.Throws<ArgumentException>(() => Safetensors.Save(dir.File("x.safetensors"), [new("a", t), new("a", t)]));
        Assert.Throws<ArgumentException>(() => Safetensors.Save(dir.File("x.safetensors"), [new("__metadata__", t)]));
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public void WrittenHeaderIsValidJsonEvenForOddNames()
    {
        using var dir = TestData.Temp();
        string odd = "naïve \"quoted\" \\ <tag> 名前";
        Safetensors.Save(dir.File("n.safetensors"), [new(odd, Tensor.FromArray(new[] { 1f }))]);
        var (json, _) = SafetensorsTestFiles.Split(File.ReadAllBytes(dir.File("n.safetensors")));
        using var doc = JsonDocument.Parse(json);
        Assert.True(doc.RootElement.TryGetProperty(odd, out _));
        using var file = SafetensorsFile.Open(dir.File("n.safetensors"));
        Assert.Equal([1f], file.Load(odd).ToArray<float>());
    }

    [Fact]
    public void NarrowIntegerFileTypesWidenExactly()
    {
        // Written by hand: Kiln never writes these, but other tools do (e.g. U8 masks, I16 quantised data).
        byte[] data = [0xFF, 0x80, 0x01, 0xFF, 0xFF, 0xFF, 0xFF];
        string json = "{\"u8\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[1,2]},"
            + "\"bool\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[2,3]},\"u32\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[3,7]}}";
        using var dir = TestData.Temp();
        File.WriteAllBytes(dir.File("n.safetensors"), SafetensorsTestFiles.Build(json, data));
        using var file = SafetensorsFile.Open(dir.File("n.safetensors"));
        Assert.Equal([255], file.Load("u8").ToArray<int>());
        Assert.Equal([-128], file.Load("i8").ToArray<int>());
        Assert.Equal([true], file.Load("bool").ToArray<bool>());
        Assert.Equal([4294967295L], file.Load("u32").ToArray<long>());
    }

    [Fact]
    public void UnsupportedButKnownDTypeFailsOnlyWhenLoaded()
    {
        string json = "{\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]},\"ok\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}";
        using var dir = TestData.Temp();
        File.WriteAllBytes(dir.File("f8.safetensors"), SafetensorsTestFiles.Build(json, [1, 2, 0, 0, 0x80, 0x3F]));
        using var file = SafetensorsFile.Open(dir.File("f8.safetensors"));
        Assert.Null(file.Info("f8").DType);
        Assert.Equal([1f], file.Load("ok").ToArray<float>());
        Assert.Contains("F8_E4M3", Assert.Throws<NotSupportedException>(() => file.Load("f8")).Message);
    }

    [Fact]
    public void DisposedFileRefusesToLoadButLoadedTensorsSurvive()
    {
        var file = SafetensorsFile.Open(SafetensorsTestFiles.LlamaTiny);
        var t = file.Load("model.norm.weight");
        file.Dispose();
        file.Dispose();   // idempotent
        Assert.Throws<ObjectDisposedException>(() => file.Load("model.norm.weight"));
        Assert.Equal(64, t.ToArray<float>().Length);
    }
}
