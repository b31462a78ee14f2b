using System.Text.Json;

namespace Kiln.LoRA.Tests.Tokenizers;

/// <summary>One case of an expected_ids*.json file (independent reference encodings, see data/SOURCES.md).</summary>
internal sealed record ExpectedCase(string Text, int[] Ids, int[]? WithSpecial);

internal static class ExpectedIds
{
    /// <summary>Reads <c>cases</c>; <paramref name="specialKey"/> names the with-special-tokens ids
    /// ("ids_with_bos" or "ids_with_special"), absent in some files.</summary>
    public static ExpectedCase[] Read(string path, string specialKey = "ids_with_special")
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return [.. doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new ExpectedCase(
            c.GetProperty("text").GetString()!,
            Ints(c.GetProperty("ids")),
            c.TryGetProperty(specialKey, out var s) ? Ints(s) : null))];
    }

    private static int[] Ints(JsonElement a) => [.. a.EnumerateArray().Select(e => e.GetInt32())];

    /// <summary>Checks every case and fails once, listing every mismatch (so one run shows them all).</summary>
    public static void AssertAll(IEnumerable<ExpectedCase> cases, Func<ExpectedCase, IEnumerable<string>> check)
    {
        var failures = cases.SelectMany(check).ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    public static IEnumerable<string> Compare(string what, string text, int[] expected, int[] actual)
    {
        if (!expected.SequenceEqual(actual))
            yield return $"{what} {JsonSerializer.Serialize(text)}: expected [{string.Join(",", expected)}] got [{string.Join(",", actual)}]";
    }
}
