// The benchmark rows: each builds its graph from realised inputs and evaluates it, the way a user calls
// Kiln (graph building and host work included in the time).
using System.Diagnostics;
using Kiln;

namespace Kiln.Bench;

public sealed record RowResult(string Name, string Shape, double Us, string Unit, double Rate);

/// <summary>A timed row; a run that returns null only builds a graph (graph-building rows).</summary>
public sealed record Row(string Name, string Shape, Func<Func<Tensor?>> Setup, double Work, string Unit)
{
    /// <summary>Warm-up, then the median of samples; short ops are batched so a sample lasts ≥ 2 ms.</summary>
    public RowResult Measure(double targetSeconds = 2.0)
    {
        var run = Setup();
        var sw = Stopwatch.StartNew();
        int calls = 0;
        // Each result is disposed, as a careful caller does (its buffer goes straight back to the pool).
        while (calls < 3 || sw.Elapsed.TotalSeconds < 0.2) { Once(run); calls++; }
        double per = sw.Elapsed.TotalSeconds / calls;
        int inner = Math.Max(1, (int)(0.002 / per));
        int samples = Math.Clamp((int)(targetSeconds / (per * inner)), 7, 301);
        var times = new double[samples];
        for (int s = 0; s < samples; s++)
        {
            sw.Restart();
            for (int i = 0; i < inner; i++) Once(run);
            times[s] = sw.Elapsed.TotalSeconds / inner;
        }
        Array.Sort(times);
        double t = times[samples / 2];
        return new RowResult(Name, Shape, t * 1e6, Unit, Work / t / 1e9);
    }

    private static void Once(Func<Tensor?> run)
    {
        if (run() is { } y) using (y.Eval()) { }
    }
}

public static class CpuRows
{
    public static IEnumerable<Row> All()
    {
        foreach (int n in new[] { 256, 512, 1024, 2048 })
            yield return new Row($"gemm_{n}", $"{n}x{n}x{n}", () =>
            {
                var a = Tensor.RandomNormal([n, n], seed: 1); var b = Tensor.RandomNormal([n, n], seed: 2);
                return () => a.MatMul(b);
            }, 2.0 * n * n * n, "GFLOP/s");
        foreach (var s in new[] { new[] { 1, 128, 1024 }, new[] { 4, 512, 4096 } })
        {
            string shape = string.Join("x", s);
            double bytes = 2.0 * s[0] * s[1] * s[2] * 4;
            yield return new Row($"softmax_{shape}", shape, () => { var x = Tensor.RandomNormal(s, 1); return () => x.Softmax(-1); }, bytes, "GB/s");
            yield return new Row($"rmsnorm_{shape}", shape, () =>
            {
                var x = Tensor.RandomNormal(s, 1); var w = Tensor.RandomNormal([s[2]], 2);
                return () => Ops.RmsNorm(x, w, 1e-6);
            }, bytes, "GB/s");
            yield return new Row($"layernorm_{shape}", shape, () =>
            {
                var x = Tensor.RandomNormal(s, 1); var w = Tensor.RandomNormal([s[2]], 2); var b = Tensor.RandomNormal([s[2]], 3);
                return () => Ops.LayerNorm(x, w, b, 1e-5);
            }, bytes, "GB/s");
            // The same norms written as primitives: recognised as the fused ops unless KILN_DISABLE=fusion, so the
            // fusion-off column runs the primitives one by one (the rows above call the fused op in both columns).
            yield return new Row($"softmax_prims_{shape}", shape, () =>
            {
                var x = Tensor.RandomNormal(s, 1);
                return () => { var e = (x - x.Max([-1], keepDim: true)).Exp(); return e / e.Sum([-1], keepDim: true); };
            }, bytes, "GB/s");
            yield return new Row($"rmsnorm_prims_{shape}", shape, () =>
            {
                var x = Tensor.RandomNormal(s, 1); var w = Tensor.RandomNormal([s[2]], 2);
                return () => x * (x.Square().Mean([-1], keepDim: true) + 1e-6).Rsqrt() * w;
            }, bytes, "GB/s");
        }
        foreach (var (b, t, d) in new[] { (1, 128, 512), (4, 16, 512), (4, 16, 1024), (4, 16, 2048) })
            yield return new Row($"lora_{b}x{t}x{d}_r8", $"x={b}x{t}x{d},W={d}x{d},r=8", () =>
            {
                var x = Tensor.RandomNormal([b, t, d], 1); var w = Tensor.RandomNormal([d, d], 2);
                var a = Tensor.RandomNormal([d, 8], 3); var bb = Tensor.RandomNormal([8, d], 4);
                return () => x.MatMul(w) + x.MatMul(a).MatMul(bb) * 2.0;
            }, 2.0 * b * t * d * (d + 8 + 8), "GFLOP/s");
        // A 10-op elementwise chain (one fused kernel): compiled loop by default; KILN_DISABLE=codegen interprets
        // it per 1024-element block, KILN_DISABLE=fusion runs 10 kernels. Bytes: one read and one write.
        foreach (var s in new[] { new[] { 1 << 20 }, new[] { 4, 16, 1024 } })
        {
            string shape = string.Join("x", s);
            yield return new Row($"fused10_{shape}", shape, () =>
            {
                var x = Tensor.RandomNormal(s, 1);
                return () => ((((x * 1.5 + 0.5).Silu() * x - 0.25).Square().Sqrt() / 3).Tanh() + x);
            }, 2.0 * s.Aggregate(1, (a, b) => a * b) * 4, "GB/s");
            yield return new Row($"fused10arith_{shape}", shape, () =>
            {
                var x = Tensor.RandomNormal(s, 1);
                return () => Ops.Maximum((((x * 1.5 + 0.5).Relu() * x - 0.25).Square() + 1).Sqrt() / 3, x).Abs() - x;
            }, 2.0 * s.Aggregate(1, (a, b) => a * b) * 4, "GB/s");
        }
        yield return new Row("eltwise_chain_4x512x4096", "4x512x4096", () =>
        {
            var x = Tensor.RandomNormal([4, 512, 4096], 1);
            return () => ((x * 1.5 + 0.5).Tanh() * x).Sigmoid() - x * 0.25;
        }, 2.0 * 4 * 512 * 4096 * 4, "GB/s");
        foreach (var r in LayerRows.All()) yield return r;
    }
}
