// Markdown table: Kiln (all threads), Kiln with one thread, and the PyTorch peer, per row.
using System.Text;
using System.Text.Json;

namespace Kiln.Bench;

public static class Report
{
    public static Dictionary<string, (double Us, double Rate)> LoadPeer(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var r = new Dictionary<string, (double, double)>();
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            double rate = e.TryGetProperty("gflops", out var g) ? g.GetDouble() : e.TryGetProperty("gbps", out var b) ? b.GetDouble() : double.NaN;
            r[e.GetProperty("name").GetString()!] = (e.GetProperty("us").GetDouble(), rate);
        }
        return r;
    }

    public static string Markdown(List<RowResult> kiln, List<RowResult> single, List<RowResult> unfused, Dictionary<string, (double Us, double Rate)>? peer)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| row | Kiln µs | Kiln rate | Kiln 1 thread µs | Kiln fusion off µs | PyTorch µs | PyTorch rate | Kiln / PyTorch speed |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var k in kiln)
        {
            var s = single.FirstOrDefault(r => r.Name == k.Name);
            var u = unfused.FirstOrDefault(r => r.Name == k.Name);
            string p = "–", pr = "–", ratio = "–";
            if (peer is not null && peer.TryGetValue(k.Name, out var pv))
            {
                p = pv.Us.ToString("F1"); pr = $"{pv.Rate:F1} {k.Unit}"; ratio = $"{pv.Us / k.Us:F2}×";
            }
            sb.AppendLine($"| {k.Name} | {k.Us:F1} | {k.Rate:F1} {k.Unit} | {(s is null ? "–" : s.Us.ToString("F1"))} | {(u is null ? "–" : u.Us.ToString("F1"))} | {p} | {pr} | {ratio} |");
        }
        return sb.ToString();
    }
}
