// KILN_LOG=kernels: wall time per op kind summed over the process, printed to stderr at exit — the first
// question when a model step is slow is which kernels its time goes to.
using System.Collections.Concurrent;
using System.Diagnostics;
using Kiln.Graph;

namespace Kiln.Runtime;

internal static class KernelProfile
{
    public static readonly bool Enabled = Settings.Log.Contains("kernels");

    /// <summary>KILN_LOG=kernels,shapes: one row per op and shapes (output ← inputs) instead of per op.</summary>
    private static readonly bool ByShape = Settings.Log.Contains("shapes");

    private static readonly ConcurrentDictionary<string, long[]> Totals = new();

    static KernelProfile()
    {
        if (Enabled) AppDomain.CurrentDomain.ProcessExit += (_, _) => Console.Error.Write(Report());
    }

    public static void Add(Node node, long start)
    {
        long ticks = Stopwatch.GetTimestamp() - start;
        string key = ByShape ? $"{node.Op.Name} {Shapes.Format(node.Shape)} <- {string.Join(" ", node.InputArray.Select(i => Shapes.Format(i.Shape)))}" : node.Op.Name;
        var t = Totals.GetOrAdd(key, _ => new long[2]);
        Interlocked.Increment(ref t[0]);
        Interlocked.Add(ref t[1], ticks);
    }

    public static string Report()
    {
        var rows = Totals.Select(kv => (Op: kv.Key, Count: Interlocked.Read(ref kv.Value[0]), Ms: Interlocked.Read(ref kv.Value[1]) * 1000.0 / Stopwatch.Frequency))
            .OrderByDescending(r => r.Ms).ToArray();
        double total = rows.Sum(r => r.Ms);
        var sb = new System.Text.StringBuilder($"[kiln kernels] {total:F1} ms in kernels (parallel kernels overlap)\n");
        foreach (var r in rows.Take(ByShape ? 40 : rows.Length)) sb.AppendLine($"  {r.Op,-22} {r.Count,8} runs {r.Ms,10:F1} ms {100 * r.Ms / Math.Max(total, 1e-9),5:F1}%");
        return sb.ToString();
    }
}
