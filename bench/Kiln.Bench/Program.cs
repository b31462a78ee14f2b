// Kiln's CPU benchmarks. `table` times every row with a median-of-N harness (the same method as the
// PyTorch peer script), runs itself again with KILN_THREADS=1 for the "optimization off" column, reads the
// peer's JSON and prints the markdown table for docs/benchmarks.md. Anything else goes to BenchmarkDotNet.
using System.Diagnostics;
using System.Text.Json;
using BenchmarkDotNet.Running;
using Kiln.Bench;

string? filter = args.SkipWhile(a => a != "--filter").Skip(1).FirstOrDefault();
IEnumerable<Row> Selected() => CpuRows.All().Where(r => filter is null || r.Name.Contains(filter));

if (args.Length > 0 && args[0] == "rows")
{
    var rows = Selected().Select(r => r.Measure()).ToList();
    string json = JsonSerializer.Serialize(rows, BenchJson.Default.ListRowResult);
    string? jsonPath = args.SkipWhile(a => a != "--json").Skip(1).FirstOrDefault();
    if (jsonPath is not null) File.WriteAllText(jsonPath, json); else Console.WriteLine(json);
    return 0;
}
if (args.Length > 0 && args[0] == "probe-hit")
{
    // Where the host time of a plan-cache hit goes: build, key walk, cache lookup, run (median µs of 2000).
    var x = Kiln.Tensor.RandomNormal([1], 1);
    double Med(Func<double> f) { var t = Enumerable.Range(0, 2001).Select(_ => f()).ToArray(); Array.Sort(t); return t[1000]; }
    for (int w = 0; w < 2000; w++) LayerRows.Chain(x, 0.999).Eval();
    double build = Med(() => { var sw = Stopwatch.StartNew(); LayerRows.Chain(x, 0.999); return sw.Elapsed.TotalMicroseconds; });
    double key = Med(() => { var y = LayerRows.Chain(x, 0.999); var sw = Stopwatch.StartNew(); Kiln.Runtime.PlanKey.Build([y.Node], true); return sw.Elapsed.TotalMicroseconds; });
    double get = Med(() => { var y = LayerRows.Chain(x, 0.999); var wk = Kiln.Runtime.PlanKey.Build([y.Node], true); var sw = Stopwatch.StartNew(); Kiln.Runtime.PlanCache.Get(wk, true, out _); return sw.Elapsed.TotalMicroseconds; });
    double eval = Med(() => { var y = LayerRows.Chain(x, 0.999); var sw = Stopwatch.StartNew(); y.Eval(); return sw.Elapsed.TotalMicroseconds; });
    Console.WriteLine($"build {build:F1} µs, key walk {key:F1} µs, cache get {get:F1} µs, whole Eval {eval:F1} µs (run = Eval - key - get ≈ {eval - key - get:F1} µs)");
    return 0;
}
if (args.Length > 0 && args[0] == "probe-reduce")
{
    // Leading-axis sums (a broadcast weight's gradient): plain over a realised x, and over a fused program.
    var x = Kiln.Tensor.RandomNormal([16, 256, 1024], 1).Eval(); var y = Kiln.Tensor.RandomNormal([1024], 2).Eval();
    double Med(Func<Kiln.Tensor> f) { var t = Enumerable.Range(0, 31).Select(_ => { var sw = Stopwatch.StartNew(); f().Eval(); return sw.Elapsed.TotalMicroseconds; }).ToArray(); Array.Sort(t); return t[15]; }
    for (int w = 0; w < 5; w++) { x.Sum([0, 1]).Eval(); (x * y).Exp().Sum([0, 1]).Eval(); }
    Console.WriteLine($"sum([0,1]) of x (16,256,1024): {Med(() => x.Sum([0, 1])):F0} µs; of exp(x·y): {Med(() => (x * y).Exp().Sum([0, 1])):F0} µs; sum([0]) of x: {Med(() => x.Sum([0])):F0} µs");
    Console.WriteLine($"sum([0,2]) of x: {Med(() => x.Sum([0, 2])):F0} µs; of exp(x·y): {Med(() => (x * y).Exp().Sum([0, 2])):F0} µs");
    return 0;
}
if (args.Length > 0 && args[0] == "probe-eval")
{
    // Where the host time of a plan-cache hit goes: a 100-op chain on one element (fused to one kernel), split
    // into building the lazy graph, the key walk, the cache lookup and running the plan. `--device cuda` on a GPU.
    string devArg = args.SkipWhile(a => a != "--device").Skip(1).FirstOrDefault() ?? "cpu";
    if (devArg.StartsWith("cuda")) Kiln.Cuda.KilnCuda.Register();
    var dev = devArg.StartsWith("cuda") ? Kiln.Device.Cuda(0) : Kiln.Device.Cpu;
    var x0 = Kiln.Tensor.RandomNormal([1], 1).To(dev).Eval();
    Kiln.Tensor Chain() { var y = x0; for (int i = 0; i < 50; i++) y = (y * 0.999).Tanh(); return y; }
    const int n = 2001;
    var t = new double[5][]; for (int k = 0; k < t.Length; k++) t[k] = new double[n];
    for (int i = 0; i < n + 200; i++)
    {
        long a = Stopwatch.GetTimestamp();
        var y = Chain();
        long b = Stopwatch.GetTimestamp();
        var walk = Kiln.Runtime.PlanKey.Build([y.Node], optimize: true);
        long c = Stopwatch.GetTimestamp();
        Kiln.Runtime.PlanCache.Get(walk, optimize: true, out _);
        long d = Stopwatch.GetTimestamp();
        y.Eval();   // the whole Eval again (walk + lookup + run): run = this minus the two above
        long e = Stopwatch.GetTimestamp();
        if (i < 200) continue;
        t[0][i - 200] = Stopwatch.GetElapsedTime(a, b).TotalMicroseconds; t[1][i - 200] = Stopwatch.GetElapsedTime(b, c).TotalMicroseconds;
        t[2][i - 200] = Stopwatch.GetElapsedTime(c, d).TotalMicroseconds; t[3][i - 200] = Stopwatch.GetElapsedTime(d, e).TotalMicroseconds;
        t[4][i - 200] = Stopwatch.GetElapsedTime(a, b).TotalMicroseconds + Stopwatch.GetElapsedTime(d, e).TotalMicroseconds;
    }
    foreach (var col in t) Array.Sort(col);
    long before = GC.GetAllocatedBytesForCurrentThread();
    var built = Chain();
    long mid = GC.GetAllocatedBytesForCurrentThread();
    built.Eval();
    long after = GC.GetAllocatedBytesForCurrentThread();
    Console.WriteLine($"allocated: build {mid - before} B ({(mid - before) / 100} B per op), Eval {after - mid} B");
    double run = t[3][n / 2] - t[1][n / 2] - t[2][n / 2];
    Console.WriteLine($"chain of 100 ops on {dev}, medians of {n}: build {t[0][n / 2]:F1} µs, key walk {t[1][n / 2]:F1} µs, cache lookup {t[2][n / 2]:F1} µs, " +
        $"whole Eval {t[3][n / 2]:F1} µs (run ≈ {run:F1} µs); build + Eval {t[4][n / 2]:F1} µs");
    return 0;
}
if (args.Length > 0 && args[0] == "probe-program")
{
    // A matmul followed by an elementwise tail (tanh(x·W + b)·0.5 + r): matmul_program vs KILN_DISABLE=matmulprogram.
    foreach (var (m, k, n) in new[] { (128, 512, 512), (512, 1024, 1024), (2048, 256, 1024) })
    {
        var x = Kiln.Tensor.RandomNormal([m, k], 1).Eval(); var w = Kiln.Tensor.RandomNormal([k, n], 2, std: 0.05).Eval();
        var b = Kiln.Tensor.RandomNormal([n], 3).Eval(); var r = Kiln.Tensor.RandomNormal([m, n], 4).Eval();
        double Med(Func<Kiln.Tensor> f) { var t = Enumerable.Range(0, 41).Select(_ => { var sw = Stopwatch.StartNew(); using var y = f(); y.Eval(); return sw.Elapsed.TotalMicroseconds; }).ToArray(); Array.Sort(t); return t[20]; }
        for (int i = 0; i < 5; i++) ((x.MatMul(w) + b).Tanh() * 0.5 + r).Eval();
        Console.WriteLine($"{m}x{k}x{n}: tanh(x·W + b)·0.5 + r {Med(() => (x.MatMul(w) + b).Tanh() * 0.5 + r):F0} µs, x·W alone {Med(() => x.MatMul(w)):F0} µs");
    }
    return 0;
}
if (args.Length > 0 && args[0] == "lora")
{
    // `lora [--child]`: Kiln as built, then with fusion off and with one thread (child processes), beside the peer JSON.
    // `lora --device cuda`: the model on the GPU; the variants are then CUDA graphs off, fusion off and TF32 on.
    string root = Path.GetFullPath(args.SkipWhile(a => a != "--root").Skip(1).FirstOrDefault() ?? ".");
    bool cuda = args.SkipWhile(a => a != "--device").Skip(1).FirstOrDefault() == "cuda";
    if (cuda) Kiln.Cuda.KilnCuda.Register();
    var me = LoraRows.Measure(root, cuda ? Kiln.Device.Cuda(0) : null);
    if (args.Contains("--child")) { Console.WriteLine(JsonSerializer.Serialize(me, BenchJson.Default.LoraResult)); return 0; }
    string? peer = args.SkipWhile(a => a != "--peer").Skip(1).FirstOrDefault();
    if (cuda)
    {
        var graphsOff = LoraChild("KILN_DISABLE", "cudagraph", root, cuda);
        var fusionOff = LoraChild("KILN_DISABLE", "fusion", root, cuda);
        var tf32 = LoraChild("KILN_TF32", "1", root, cuda);
        var bf16 = LoraChild("KILN_BENCH_DTYPE", "bf16", root, cuda);
        Console.WriteLine(Report.LoraCudaMarkdown(me, graphsOff, fusionOff, tf32, bf16, peer, CudaRows.DeviceLine()));
        return 0;
    }
    var unfused = LoraChild("KILN_DISABLE", "fusion", root);
    var single = LoraChild("KILN_THREADS", "1", root);
    Console.WriteLine(Report.LoraMarkdown(me, unfused, single, peer));
    return 0;
}
if (args.Length > 0 && args[0] == "cuda")
{
    // `cuda [--child] [--peer torch_cuda.json] [--json merged.json] [--filter name]`: the GPU table (CudaRows), with
    // the same rows again in child processes with KILN_DISABLE=cudagraph and KILN_DISABLE=fusion.
    try
    {
        var me = CudaRows.Measure(filter);
        if (args.Contains("--child")) { Console.WriteLine(CudaChildJson(me)); return 0; }
        string? peer = args.SkipWhile(a => a != "--peer").Skip(1).FirstOrDefault();
        string? jsonOut = args.SkipWhile(a => a != "--json").Skip(1).FirstOrDefault();
        var graphsOff = CudaChild("cudagraph");
        var fusionOff = CudaChild("fusion");
        var (md, json) = CudaRows.Report(me, graphsOff, fusionOff, peer);
        Console.WriteLine(md);
        if (jsonOut is not null) File.WriteAllText(jsonOut, json);
        else { Console.WriteLine("```json"); Console.WriteLine(json); Console.WriteLine("```"); }
        return 0;
    }
    catch (CudaUnavailable e)
    {
        Console.Error.WriteLine(e.Message);
        return 3;
    }
}
if (args.Length > 0 && args[0] == "table")
{
    string? peer = args.SkipWhile(a => a != "--peer").Skip(1).FirstOrDefault();
    var fast = Selected().Select(r => r.Measure()).ToList();
    var single = RunChild("KILN_THREADS", "1");
    var unfused = RunChild("KILN_DISABLE", "fusion");
    Console.WriteLine(Report.Markdown(fast, single, unfused, peer is null ? null : Report.LoadPeer(peer)));
    Console.WriteLine(LayerRows.PlanHitRate());
    return 0;
}
BenchmarkSwitcher.FromAssembly(typeof(CpuRows).Assembly).Run(args);
return 0;

List<RowResult> RunChild(string env, string value)
{
    string tmp = Path.GetTempFileName();
    var psi = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
    foreach (var a in Environment.GetCommandLineArgs().Skip(1).TakeWhile(a => a != "table")) psi.ArgumentList.Add(a);
    if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(typeof(CpuRows).Assembly.Location);
    psi.ArgumentList.Add("rows"); psi.ArgumentList.Add("--json"); psi.ArgumentList.Add(tmp);
    if (filter is not null) { psi.ArgumentList.Add("--filter"); psi.ArgumentList.Add(filter); }
    psi.Environment[env] = value;
    using var p = Process.Start(psi)!;
    p.WaitForExit();
    if (p.ExitCode != 0) throw new InvalidOperationException($"child benchmark run ({env}={value}) failed with exit code {p.ExitCode}");
    return JsonSerializer.Deserialize(File.ReadAllText(tmp), BenchJson.Default.ListRowResult)!;
}

LoraResult LoraChild(string env, string value, string root, bool cuda = false)
{
    var psi = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false, RedirectStandardOutput = true };
    if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(typeof(CpuRows).Assembly.Location);
    foreach (var a in new[] { "lora", "--child", "--root", root }) psi.ArgumentList.Add(a);
    if (cuda) { psi.ArgumentList.Add("--device"); psi.ArgumentList.Add("cuda"); }
    psi.Environment[env] = value;
    using var p = Process.Start(psi)!;
    string json = p.StandardOutput.ReadToEnd();
    p.WaitForExit();
    if (p.ExitCode != 0) throw new InvalidOperationException($"child LoRA benchmark ({env}={value}) failed with exit code {p.ExitCode}");
    return JsonSerializer.Deserialize(json.Trim().Split('\n')[^1], BenchJson.Default.LoraResult)!;
}

// Child results as plain JSON nodes (no reflection: the published benchmark is trimmed).
static string CudaChildJson(List<CudaResult> rows) => new System.Text.Json.Nodes.JsonArray(rows.Select(r => (System.Text.Json.Nodes.JsonNode?)new System.Text.Json.Nodes.JsonObject
{
    ["name"] = r.Name, ["shape"] = r.Shape, ["us"] = r.Us, ["unit"] = r.Unit, ["rate"] = r.Rate, ["samples"] = r.Samples,
}).ToArray()).ToJsonString();

List<CudaResult>? CudaChild(string disable)
{
    var psi = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false, RedirectStandardOutput = true };
    if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(typeof(CpuRows).Assembly.Location);
    psi.ArgumentList.Add("cuda"); psi.ArgumentList.Add("--child");
    if (filter is not null) { psi.ArgumentList.Add("--filter"); psi.ArgumentList.Add(filter); }
    psi.Environment["KILN_DISABLE"] = disable;
    using var p = Process.Start(psi)!;
    string output = p.StandardOutput.ReadToEnd();
    p.WaitForExit();
    if (p.ExitCode != 0)
    {
        // A failed column is reported as missing, not fatal: the main column and the peer still print.
        Console.Error.WriteLine($"[kiln cuda bench] child run with KILN_DISABLE={disable} failed with exit code {p.ExitCode}");
        return null;
    }
    var arr = System.Text.Json.Nodes.JsonNode.Parse(output.Trim().Split('\n')[^1])!.AsArray();
    return arr.Select(n => new CudaResult((string)n!["name"]!, (string)n["shape"]!, (double)n["us"]!, (string)n["unit"]!, (double)n["rate"]!, (int)n["samples"]!)).ToList();
}
