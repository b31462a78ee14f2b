// "Did you mean": when a tensor name is missing, the likely cause is a naming-scheme mismatch
// (a "model." prefix, "weight" vs "bias"), and the nearest names show it at a glance.
namespace Kiln.LoRA.IO;

internal static class NameSuggestions
{
    /// <summary>The <paramref name="count"/> names closest to <paramref name="wanted"/> by edit distance.</summary>
    public static IEnumerable<string> Closest(string wanted, IEnumerable<string> names, int count = 5) =>
        names.OrderBy(n => EditDistance(wanted, n)).ThenBy(n => n, StringComparer.Ordinal).Take(count);

    public static KeyNotFoundException NotFound(string what, string name, IReadOnlyCollection<string> names)
    {
        string hint = names.Count == 0 ? "it holds no tensors" : $"closest of its {names.Count} names: {string.Join(", ", Closest(name, names).Select(n => $"'{n}'"))}";
        return new KeyNotFoundException($"{what} has no tensor '{name}'; {hint}");
    }

    /// <summary>Levenshtein distance, two rows.</summary>
    private static int EditDistance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
