// Every environment variable Kiln reads, read here and nowhere else (documented in docs/env-vars.md).
namespace Kiln;

public static class Settings
{
    /// <summary>KILN_DEVICE: cpu (default) or cuda.</summary>
    public static string? Device => Normalize(Environment.GetEnvironmentVariable("KILN_DEVICE"));

    /// <summary>KILN_THREADS: worker threads for CPU kernels and parallel levels (default: all cores).</summary>
    public static int Threads { get; } = ParseThreads(Environment.GetEnvironmentVariable("KILN_THREADS"));

    /// <summary>KILN_LOG: comma-separated topics (eval) to print to stderr.</summary>
    public static IReadOnlySet<string> Log { get; } = ParseList(Environment.GetEnvironmentVariable("KILN_LOG"));

    /// <summary>
    /// KILN_DISABLE: comma-separated features to switch off (parallel: run levels one node at a time; codegen:
    /// interpret fused elementwise programs instead of compiling them; optimizer passes by name).
    /// </summary>
    public static IReadOnlySet<string> Disabled { get; } = ParseList(Environment.GetEnvironmentVariable("KILN_DISABLE"));

    public static bool IsDisabled(string feature) => Disabled.Contains(feature);

    /// <summary>
    /// KILN_TF32=1 (or set here, as torch.backends.cuda.matmul.allow_tf32): fp32 GEMMs on a GPU may use TF32 tensor
    /// cores (10-bit mantissa inputs, fp32 accumulation: ~1e-3 relative error, several times the throughput). Off by
    /// default (full fp32, as the CPU). Captured CUDA graphs are re-captured when this changes. The CPU ignores it.
    /// </summary>
    public static bool AllowTf32
    {
        // Read on first use (an fp32 GEMM on a GPU), so a malformed KILN_TF32 is a clear error there, not a failed type initialiser.
        get => _allowTf32 ??= ParseBool("KILN_TF32", Environment.GetEnvironmentVariable("KILN_TF32"));
        set => _allowTf32 = value;
    }

    private static bool? _allowTf32;

    /// <summary>KILN_DISABLE=codegen: fused elementwise groups run through the interpreter, not a loop compiled at run time.</summary>
    internal const string Codegen = "codegen";

    private static string? Normalize(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim().ToLowerInvariant();

    private static HashSet<string> ParseList(string? s) =>
        new((s ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => x.ToLowerInvariant()));

    internal static bool ParseBool(string name, string? s) => Normalize(s) switch
    {
        null or "0" or "false" or "no" or "off" => false,
        "1" or "true" or "yes" or "on" => true,
        _ => throw new FormatException($"{name}='{s}' is not a boolean (1/0, true/false, on/off)"),
    };

    private static int ParseThreads(string? s)
    {
        if (string.IsNullOrWhiteSpace(s)) return Environment.ProcessorCount;
        if (int.TryParse(s, out int n) && n > 0) return n;
        throw new FormatException($"KILN_THREADS='{s}' is not a positive integer");
    }
}
