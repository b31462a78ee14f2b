// Loads ../../data/ops/reference.json: PyTorch float64 forward values and gradients for every op.
using System.Text.Json;

namespace Kiln.Tests.Reference;

public sealed record RefTensor(int[] Shape, string DType, double[] Data)
{
    public Tensor ToTensor(DType floatType = Kiln.DType.Float64) => DType switch
    {
        "float64" => Tensor.FromArray(Data, Shape).Cast(floatType).Eval(),
        "int64" => Tensor.FromArray(Data.Select(v => (long)v).ToArray(), Shape),
        "bool" => Tensor.FromArray(Data.Select(v => v != 0).ToArray(), Shape),
        _ => throw new NotSupportedException(DType),
    };
}

public sealed record RefCase(int Index, string Op, JsonElement Attrs, RefTensor[] Inputs, RefTensor Output, RefTensor? Upstream, RefTensor?[]? Grads)
{
    public override string ToString() => $"{Index:D3} {Op}";

    public int Int(string name) => Attrs.GetProperty(name).GetInt32();
    public double Double(string name) => Attrs.GetProperty(name).GetDouble();
    public bool Bool(string name) => Attrs.GetProperty(name).GetBoolean();
    public int[]? IntArray(string name) =>
        Attrs.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().Select(e => e.GetInt32()).ToArray() : null;
}

public static class ReferenceCases
{
    private static readonly Lazy<RefCase[]> All = new(Load);
    public static RefCase[] Cases => All.Value;

    public static string DataPath(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var p = Path.Combine(dir.FullName, relative);
            if (File.Exists(p)) return p;
        }
        throw new FileNotFoundException($"test data '{relative}' not found above {AppContext.BaseDirectory}");
    }

    private static RefCase[] Load()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(DataPath("data/ops/reference.json")));
        var cases = new List<RefCase>();
        int i = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            RefTensor T(JsonElement e) => new(
                e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                e.GetProperty("dtype").GetString()!,
                e.GetProperty("data").EnumerateArray().Select(x => x.ValueKind switch
                {
                    JsonValueKind.True => 1.0, JsonValueKind.False => 0.0, _ => x.GetDouble(),
                }).ToArray());
            var grads = c.TryGetProperty("grads", out var g) && g.ValueKind == JsonValueKind.Array
                ? g.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Null ? null : T(x)).ToArray() : null;
            cases.Add(new RefCase(i++, c.GetProperty("op").GetString()!, c.GetProperty("attrs").Clone(),
                c.GetProperty("inputs").EnumerateArray().Select(T).ToArray(), T(c.GetProperty("output")),
                c.TryGetProperty("upstream", out var u) ? T(u) : null, grads));
        }
        return cases.ToArray();
    }
}
