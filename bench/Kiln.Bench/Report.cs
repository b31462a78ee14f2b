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

    /// <summary>The LoRA training/decoding table: Kiln as built, fusion off, one thread, and the PyTorch peer JSON (bench/peers/lora_cpu.py).</summary>
    internal static string LoraMarkdown(LoraResult kiln, LoraResult unfused, LoraResult single, string? peerPath)
    {
        double? peerTrain = null, peerDecode = null; int? peerThreads = null;
        if (peerPath is not null)
        {
            var p = System.Text.Json.JsonDocument.Parse(File.ReadAllText(peerPath)).RootElement;
            peerTrain = p.GetProperty("train").GetProperty("us_per_step").GetDouble();
            peerDecode = p.GetProperty("decode").GetProperty("us_per_token").GetDouble();
            peerThreads = p.GetProperty("threads").GetInt32();
        }
        string Cell(double? v) => v is null ? "—" : $"{v:F0}";
        string Speed(double? peer, double mine) => peer is null ? "—" : $"{peer / mine:F2}×";
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"| stories260K, LoRA r8 all-linear | Kiln µs | tokens/s | Kiln fusion off µs | Kiln 1 thread µs | PyTorch ({peerThreads} thread) µs | Kiln vs PyTorch |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        sb.AppendLine($"| train step (4×128, fwd+bwd+AdamW) | {kiln.TrainUsPerStep:F0} | {kiln.TrainTokensPerS:F0} | {unfused.TrainUsPerStep:F0} | {single.TrainUsPerStep:F0} | {Cell(peerTrain)} | {Speed(peerTrain, kiln.TrainUsPerStep)} |");
        sb.AppendLine($"| decode, per token (greedy, KV cache) | {kiln.DecodeUsPerToken:F0} | {kiln.DecodeTokensPerS:F0} | {unfused.DecodeUsPerToken:F0} | {single.DecodeUsPerToken:F0} | {Cell(peerDecode)} | {Speed(peerDecode, kiln.DecodeUsPerToken)} |");
        sb.AppendLine($"\nKiln's greedy ids equal llama2.c's: {kiln.GreedyMatches}.");
        return sb.ToString();
    }

    /// <summary>The GPU form: Kiln as built, with CUDA graphs off, fusion off and TF32 on, beside PyTorch eager on the
    /// same GPU (bench/peers/lora_cpu.py --device cuda).</summary>
    internal static string LoraCudaMarkdown(LoraResult kiln, LoraResult graphsOff, LoraResult fusionOff, LoraResult tf32, LoraResult bf16, string? peerPath, string device)
    {
        double? peerTrain = null, peerDecode = null; string? peerDevice = null;
        if (peerPath is not null && File.Exists(peerPath))
        {
            var p = System.Text.Json.JsonDocument.Parse(File.ReadAllText(peerPath)).RootElement;
            peerTrain = p.GetProperty("train").GetProperty("us_per_step").GetDouble();
            peerDecode = p.GetProperty("decode").GetProperty("us_per_token").GetDouble();
            peerDevice = p.TryGetProperty("device", out var dv) ? dv.ToString() : null;
        }
        string Cell(double? v) => v is null ? "—" : $"{v:F0}";
        string Speed(double? peer, double mine) => peer is null ? "—" : $"{peer / mine:F2}×";
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"Device: {device}; peer: PyTorch eager on {peerDevice ?? "—"}.");
        sb.AppendLine();
        sb.AppendLine("| stories260K on the GPU, LoRA r8 all-linear | Kiln µs | tokens/s | Kiln cudagraph off µs | Kiln fusion off µs | Kiln TF32 µs | Kiln bf16 base µs | PyTorch eager µs | Kiln vs PyTorch |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        sb.AppendLine($"| train step (4×128, fwd+bwd+AdamW) | {kiln.TrainUsPerStep:F0} | {kiln.TrainTokensPerS:F0} | {graphsOff.TrainUsPerStep:F0} | {fusionOff.TrainUsPerStep:F0} | {tf32.TrainUsPerStep:F0} | {bf16.TrainUsPerStep:F0} | {Cell(peerTrain)} | {Speed(peerTrain, kiln.TrainUsPerStep)} |");
        sb.AppendLine($"| decode, per token (greedy, KV cache) | {kiln.DecodeUsPerToken:F0} | {kiln.DecodeTokensPerS:F0} | {graphsOff.DecodeUsPerToken:F0} | {fusionOff.DecodeUsPerToken:F0} | {tf32.DecodeUsPerToken:F0} | {bf16.DecodeUsPerToken:F0} | {Cell(peerDecode)} | {Speed(peerDecode, kiln.DecodeUsPerToken)} |");
        sb.AppendLine("\nbf16 base: the frozen weights, the computation and the KV cache in bf16 (`KILN_BENCH_DTYPE=bf16`, as `kiln train --dtype bf16`); LoRA and AdamW fp32.");
        sb.AppendLine($"\nKiln's greedy ids on the GPU equal llama2.c's: {kiln.GreedyMatches}.");
        return sb.ToString();
    }
}
