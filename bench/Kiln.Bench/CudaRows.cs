// The GPU benchmark (issue 5, "Benchmarks on the H100"): each case timed as a whole Eval on cuda:0 the way a
// user calls it (lazy graph built from device-resident inputs every iteration, Eval, then a context
// synchronize), median of N after warm-up. The same rows run again in child processes with
// KILN_DISABLE=cudagraph and KILN_DISABLE=fusion; bench/cuda/torch_peer.py writes the PyTorch columns.
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kiln.Cuda;

namespace Kiln.Bench;

/// <summary>One measured case: median µs per Eval and its rate in <see cref="Unit"/>.</summary>
public sealed record CudaResult(string Name, string Shape, double Us, string Unit, double Rate, int Samples);

public static class CudaRows
{
    /// <summary>Tf32: the case runs with Settings.AllowTf32 on (every other case with it off).</summary>
    private sealed record Case(string Name, string Shape, Func<Device, Func<Tensor>> Setup, Func<double, double> Rate, string Unit, bool Tf32 = false);

    private const double MiB = 1024 * 1024;

    private static IEnumerable<Case> Cases()
    {
        foreach (var (b, t, d) in new[] { (1, 128, 512), (4, 16, 512), (4, 16, 1024), (4, 16, 2048) })
        {
            const int r = 8; const double s = 2.0;
            double m = b * t, flops = 2 * m * d * d + 2 * m * d * r + 2 * m * r * d;
            yield return new Case($"lora_fwd_{b}x{t}x{d}_r{r}", $"x=({b},{t},{d}) W={d}x{d} r={r} fp32", dev =>
            {
                var x = Rand([b, t, d], 1, dev); var w = Rand([d, d], 2, dev, 1 / Math.Sqrt(d));
                var a = Rand([d, r], 3, dev, 1 / Math.Sqrt(d)); var bb = Rand([r, d], 4, dev, 0.01);
                return () => x.MatMul(w) + x.MatMul(a).MatMul(bb) * s;
            }, us => flops / us / 1e6, "TFLOP/s");
        }
        foreach (var (b, t, d) in new[] { (1, 128, 1024), (4, 512, 4096) })
        {
            double bytes = 4.0 * b * t * d;
            yield return new Case($"softmax_{b}x{t}x{d}", $"({b},{t},{d}) fp32, last dim", dev =>
            {
                var x = Rand([b, t, d], 5, dev);
                return () => x.Softmax(-1);
            }, us => 2 * bytes / us / 1e3, "GB/s");
        }
        foreach (var (b, t, d) in new[] { (1, 128, 1024), (4, 512, 4096) })
        {
            double bytes = 4.0 * b * t * d;
            yield return new Case($"rmsnorm_{b}x{t}x{d}", $"({b},{t},{d}) fp32, eps 1e-6, weight", dev =>
            {
                var x = Rand([b, t, d], 6, dev); var w = Rand([d], 7, dev, 0.1, 1.0);   // data, not a fill of ones
                return () => Ops.RmsNorm(x, w, 1e-6);
            }, us => 2 * bytes / us / 1e3, "GB/s");
        }
        yield return new Case("chain100_1024", "(1024,) fp32, 50×(y·0.999).tanh()", dev =>
        {
            var x = Rand([1024], 8, dev);
            return () => LayerRows.Chain(x, 0.999);
        }, us => us / 100, "µs/op");
        const int n = 4096;
        yield return new Case("gemm_4096_fp32", "4096³ fp32 (cuBLASLt, no TF32)", dev =>
        {
            var x = Rand([n, n], 9, dev); var w = Rand([n, n], 10, dev);
            return () => x.MatMul(w);
        }, us => 2.0 * n * n * n / us / 1e6, "TFLOP/s");
        yield return new Case("gemm_4096_tf32", "4096³ fp32 inputs, TF32 tensor cores (KILN_TF32=1)", dev =>
        {
            var x = Rand([n, n], 9, dev); var w = Rand([n, n], 10, dev);
            return () => x.MatMul(w);
        }, us => 2.0 * n * n * n / us / 1e6, "TFLOP/s", Tf32: true);
        const int copyElems = 64 * 1024 * 1024;   // 256 MiB of fp32
        yield return new Case("copy_256MiB", "x·1.0001, 256 MiB fp32 read + write", dev =>
        {
            var x = Rand([copyElems], 11, dev);
            return () => x * 1.0001;
        }, us => 2 * 256 * MiB / us / 1e3, "GB/s");

        // bf16 rows (fp32 accumulation in the GEMMs).
        {
            const int b = 4, t = 512, d = 4096, r = 16; const double s = 2.0;
            double m = b * t, flops = 2 * m * d * d + 2 * m * d * r + 2 * m * r * d;
            yield return new Case($"lora_fwd_bf16_{b}x{t}x{d}_r{r}", $"x=({b},{t},{d}) W={d}x{d} r={r} bf16", dev =>
            {
                var x = Rand([b, t, d], 21, dev, dtype: DType.BFloat16); var w = Rand([d, d], 22, dev, 1 / Math.Sqrt(d), dtype: DType.BFloat16);
                var a = Rand([d, r], 23, dev, 1 / Math.Sqrt(d), dtype: DType.BFloat16); var bb = Rand([r, d], 24, dev, 0.01, dtype: DType.BFloat16);
                return () => x.MatMul(w) + x.MatMul(a).MatMul(bb) * s;
            }, us => flops / us / 1e6, "TFLOP/s");
            // A tanh-GELU MLP's backward to its pre-activation, as autograd writes it: (dy·W2ᵀ)·gelu_tanh'(pre) — one
            // GEMM with cuBLASLt's DGELU epilogue (fusion off: the GEMM, then an elementwise kernel).
            yield return new Case($"gelu_bwd_bf16_{b}x{t}x{d}", $"d pre of gelu_tanh(pre)·W2, pre=({b},{t},{d}) W2={d}x{d} bf16", dev =>
            {
                var pre = Rand([b, t, d], 31, dev, dtype: DType.BFloat16); var w2 = Rand([d, d], 32, dev, 1 / Math.Sqrt(d), dtype: DType.BFloat16);
                var dy = Rand([b, t, d], 33, dev, dtype: DType.BFloat16);
                return () => Autograd.Grad((pre.Gelu(GeluApproximation.Tanh).MatMul(w2) * dy).Sum(), pre)[0];
            }, us => 2 * m * d * d / us / 1e6, "TFLOP/s");
            yield return new Case($"gemm_xw_bf16_{b}x{t}x{d}", $"x@W, x=({b},{t},{d}) W={d}x{d} bf16 (the LoRA row's floor)", dev =>
            {
                var x = Rand([b, t, d], 21, dev, dtype: DType.BFloat16); var w = Rand([d, d], 22, dev, 1 / Math.Sqrt(d), dtype: DType.BFloat16);
                return () => x.MatMul(w);
            }, us => 2 * m * d * d / us / 1e6, "TFLOP/s");
        }
        foreach (var (b, t, d) in new[] { (4, 512, 4096), (16, 2048, 4096) })
        {
            double bytes = 2.0 * b * t * d;
            yield return new Case($"softmax_bf16_{b}x{t}x{d}", $"({b},{t},{d}) bf16, last dim", dev =>
            {
                var x = Rand([b, t, d], 25, dev, dtype: DType.BFloat16);
                return () => x.Softmax(-1);
            }, us => 2 * bytes / us / 1e3, "GB/s");
            yield return new Case($"rmsnorm_bf16_{b}x{t}x{d}", $"({b},{t},{d}) bf16, eps 1e-6, weight", dev =>
            {
                var x = Rand([b, t, d], 26, dev, dtype: DType.BFloat16); var w = Rand([d], 27, dev, 0.1, 1.0, DType.BFloat16);
                return () => Ops.RmsNorm(x, w, 1e-6);
            }, us => 2 * bytes / us / 1e3, "GB/s");
        }
        // Reductions over x (4,512,4096) fp32 (32 MiB read): all elements, each row, the leading axes (a bias
        // gradient's shape), argmax per row.
        foreach (var (name, shape, f) in new (string, string, Func<Tensor, Tensor>)[]
        {
            ("sum_all_4x512x4096", "(4,512,4096) fp32 → scalar", t => t.Sum()),
            ("sum_rows_4x512x4096", "(4,512,4096) fp32, last dim", t => t.Sum([-1])),
            ("sum_leading_4x512x4096", "(4,512,4096) fp32, axes 0,1", t => t.Sum([0, 1])),
            ("argmax_rows_4x512x4096", "(4,512,4096) fp32, last dim", t => t.ArgMax(-1)),
        })
            yield return new Case(name, shape, dev =>
            {
                var x = Rand([4, 512, 4096], 30, dev);
                return () => f(x);
            }, us => 4.0 * 4 * 512 * 4096 / us / 1e3, "GB/s");
        const int big = 8192;
        yield return new Case("gemm_8192_bf16", "8192³ bf16, fp32 accumulation", dev =>
        {
            var x = Rand([big, big], 28, dev, dtype: DType.BFloat16); var w = Rand([big, big], 29, dev, dtype: DType.BFloat16);
            return () => x.MatMul(w);
        }, us => 2.0 * big * big * big / us / 1e6, "TFLOP/s");
    }

    private static Tensor Rand(int[] shape, int seed, Device dev, double std = 1, double mean = 0, DType dtype = DType.Float32) =>
        Tensor.RandomNormal(shape, seed, mean, std, dtype: dtype, device: dev);

    /// <summary>Registers CUDA and measures every case (or those whose name contains <paramref name="filter"/>).</summary>
    public static List<CudaResult> Measure(string? filter, double secondsPerCase = 1.0)
    {
        if (!CudaDevice.IsAvailable)
            throw new CudaUnavailable(CudaDevice.UnavailableReason ?? "unknown reason");
        KilnCuda.Register();
        var dev = Device.Cuda(0);
        var ctx = CudaContext.Get(0);
        var results = new List<CudaResult>();
        foreach (var c in Cases().Where(c => filter is null || c.Name.Contains(filter)))
        {
            Settings.AllowTf32 = c.Tf32;
            var run = c.Setup(dev);
            ctx.Synchronize();
            double Once()
            {
                var sw = Stopwatch.StartNew();
                using var y = run();
                y.Eval();
                ctx.Synchronize();
                return sw.Elapsed.TotalMicroseconds;
            }
            // Warm-up: kernel compilation (NVRTC, disk-cached), the plan cache and the CUDA Graph capture (second run).
            var warm = Stopwatch.StartNew();
            int calls = 0;
            while (calls < 10 || (warm.Elapsed.TotalSeconds < 0.2 && calls < 1000)) { Once(); calls++; }
            double per = Once();
            int samples = Math.Clamp((int)(secondsPerCase * 1e6 / Math.Max(per, 1)), 15, 2001);
            var times = new double[samples];
            for (int i = 0; i < samples; i++) times[i] = Once();
            Array.Sort(times);
            double us = times[samples / 2];
            results.Add(new CudaResult(c.Name, c.Shape, us, c.Unit, c.Rate(us), samples));
            // Where the host time goes (for the log only): building the lazy graph, then Eval until it returns.
            var build = new double[101]; var eval = new double[101];
            for (int i = 0; i < build.Length; i++)
            {
                var sw = Stopwatch.StartNew();
                using var y = run();
                build[i] = sw.Elapsed.TotalMicroseconds;
                y.Eval();
                eval[i] = sw.Elapsed.TotalMicroseconds - build[i];
                ctx.Synchronize();
            }
            Array.Sort(build); Array.Sort(eval);
            Console.Error.WriteLine($"[kiln cuda bench] {c.Name}: {us:F1} µs ({c.Rate(us):F2} {c.Unit}), {samples} samples; host: build {build[50]:F1} µs, Eval {eval[50]:F1} µs");
        }
        return results;
    }

    public static string DeviceLine()
    {
        if (!CudaDevice.IsAvailable) return "no GPU";
        var d = CudaDevice.Get(0);
        return $"{d.Name} ({d.Arch}, {d.SmCount} SMs, {d.TotalMemory / (1024.0 * MiB):F0} GiB)";
    }

    /// <summary>The markdown table (Kiln, graphs off, fusion off, PyTorch columns) and the merged JSON.</summary>
    public static (string Markdown, string Json) Report(List<CudaResult> kiln, List<CudaResult>? graphsOff, List<CudaResult>? fusionOff, string? peerPath)
    {
        JsonObject? peer = peerPath is not null && File.Exists(peerPath) ? JsonNode.Parse(File.ReadAllText(peerPath))?.AsObject() : null;
        JsonObject? peerRows = peer?["rows"]?.AsObject();
        double? PeerUs(string row, string variant) =>
            peerRows?[row]?[variant] is JsonObject o && o["us"] is JsonValue v && v.TryGetValue(out double d) ? d : null;
        string F(double? v) => v is null ? "—" : v.Value < 100 ? v.Value.ToString("F1") : v.Value.ToString("F0");
        string[] variants = ["eager", "compile", "compile_reduce_overhead", "cuda_graph"];

        var sb = new StringBuilder();
        sb.AppendLine($"Device: {DeviceLine()}; PyTorch: {peer?["torch"]?.ToString() ?? "—"} on {peer?["device"]?.ToString() ?? "—"}.");
        sb.AppendLine("Kiln: whole `Eval` per iteration (graph build + plan lookup + launch/replay + synchronize), median; PyTorch: CUDA events around one call, median.");
        sb.AppendLine();
        sb.AppendLine("| case | shape | Kiln µs | Kiln rate | Kiln cudagraph off µs | Kiln fusion off µs | PyTorch eager µs | torch.compile µs | compile reduce-overhead µs | PyTorch CUDA Graph µs | vs eager | vs best compile | vs CUDA Graph |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        var merged = new JsonArray();
        foreach (var k in kiln)
        {
            var g = graphsOff?.FirstOrDefault(r => r.Name == k.Name);
            var f = fusionOff?.FirstOrDefault(r => r.Name == k.Name);
            double?[] p = variants.Select(v => PeerUs(k.Name, v)).ToArray();
            double? bestCompile = new[] { p[1], p[2] }.Where(v => v is not null).DefaultIfEmpty(null).Min();
            string Speed(double? other) => other is null ? "—" : $"{other.Value / k.Us:F2}×";
            sb.AppendLine($"| {k.Name} | {k.Shape} | {F(k.Us)} | {k.Rate:F2} {k.Unit} | {F(g?.Us)} | {F(f?.Us)} | {F(p[0])} | {F(p[1])} | {F(p[2])} | {F(p[3])} | {Speed(p[0])} | {Speed(bestCompile)} | {Speed(p[3])} |");
            var row = new JsonObject
            {
                ["name"] = k.Name, ["shape"] = k.Shape, ["unit"] = k.Unit,
                ["kiln"] = new JsonObject { ["us"] = k.Us, ["rate"] = k.Rate, ["samples"] = k.Samples },
                ["kiln_cudagraph_off"] = g is null ? null : new JsonObject { ["us"] = g.Us, ["rate"] = g.Rate },
                ["kiln_fusion_off"] = f is null ? null : new JsonObject { ["us"] = f.Us, ["rate"] = f.Rate },
            };
            foreach (var v in variants) row["torch_" + v] = peerRows?[k.Name]?[v]?.DeepClone();
            merged.Add((JsonNode)row);
        }
        if (peer?["extra"] is JsonObject extra)
        {
            sb.AppendLine();
            foreach (var (name, value) in extra)
                sb.AppendLine($"- PyTorch {name}: {(value is JsonObject o && o["us"] is not null ? $"{o["us"]} µs, {o["rate"]} {o["unit"]}" : value?.ToJsonString())}");
        }
        if (peerRows is not null)
        {
            var notes = new List<string>();
            foreach (var (name, value) in peerRows)
                if (value?["errors"] is JsonObject errs)
                    foreach (var (variant, why) in errs) notes.Add($"- {name} {variant}: {why}");
            if (notes.Count > 0) { sb.AppendLine(); sb.AppendLine("PyTorch variants that did not run:"); notes.ForEach(n => sb.AppendLine(n)); }
        }
        var doc = new JsonObject
        {
            ["device"] = DeviceLine(),
            ["rows"] = merged,
            ["peer"] = peer?.DeepClone(),
        };
        return (sb.ToString(), doc.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}

/// <summary>No usable GPU: the message says why (the benchmark exits with a clean error, no stack trace).</summary>
public sealed class CudaUnavailable(string reason) : Exception("CUDA unavailable: " + reason);
