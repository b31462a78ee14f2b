// `kiln info`: version, devices and their properties, SIMD width in use, thread count.
using System.CommandLine;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Spectre.Console;

namespace Kiln.Cli;

internal static class InfoCommand
{
    public static Command Create()
    {
        var cmd = new Command("info", "Show the Kiln version, devices, SIMD width and threads");
        cmd.SetAction(_ =>
        {
            var table = new Table().AddColumn("property").AddColumn("value").Border(TableBorder.Rounded);
            table.AddRow("kiln", typeof(Tensor).Assembly.GetName().Version?.ToString(3) ?? "?");
            table.AddRow(".NET", RuntimeInformation.FrameworkDescription);
            table.AddRow("OS / arch", $"{RuntimeInformation.OSDescription} / {RuntimeInformation.ProcessArchitecture}");
            table.AddRow("default device", Device.Default.ToString());
            table.AddRow("cpu", $"{Environment.ProcessorCount} logical cores, {Settings.Threads} Kiln threads (KILN_THREADS)");
            table.AddRow("simd", SimdDescription());
            foreach (var (k, v) in CudaRows()) table.AddRow(k, Markup.Escape(v));
            AnsiConsole.Write(table);
            return 0;
        });
        return cmd;
    }

    /// <summary>The GPU rows: each device (name, memory, compute capability, SMs), the driver and the
    /// NVRTC / cuBLASLt versions, or why CUDA is unavailable. Never throws.</summary>
    internal static List<(string Key, string Value)> CudaRows()
    {
        var rows = new List<(string, string)>();
        if (!Kiln.Cuda.CudaDevice.IsAvailable)
        {
            rows.Add(("cuda", $"unavailable: {Kiln.Cuda.CudaDevice.UnavailableSummary}"));
            return rows;
        }
        try
        {
            int count = Kiln.Cuda.CudaDevice.Count;
            for (int i = 0; i < count; i++)
            {
                var d = Kiln.Cuda.CudaDevice.Get(i);
                rows.Add(($"gpu {i}", $"{d.Name}, {d.TotalMemory / (1024.0 * 1024 * 1024):0.#} GiB, compute capability " +
                    $"{d.ComputeCapability.Major}.{d.ComputeCapability.Minor} ({d.Arch}), {d.SmCount} SMs"));
            }
            rows.Add(("cuda driver", $"{Kiln.Cuda.Cu.FormatVersion(Kiln.Cuda.Cu.DriverVersion)} ({Kiln.Cuda.CudaLibraries.LoadedFrom(Kiln.Cuda.CudaLibraryKind.Driver)})"));
        }
        catch (Exception e) { rows.Add(("cuda", $"error: {e.Message.Split('\n')[0]}")); }
        rows.Add(("nvrtc", Library(Kiln.Cuda.CudaLibraryKind.Nvrtc, () => $"{Kiln.Cuda.Nvrtc.Version.Major}.{Kiln.Cuda.Nvrtc.Version.Minor}")));
        rows.Add(("cublasLt", Library(Kiln.Cuda.CudaLibraryKind.CublasLt, () => Kiln.Cuda.CublasLt.FormatVersion(Kiln.Cuda.CublasLt.Version))));
        rows.Add(("cuda execution", "kiln train|generate --device cuda, KILN_DEVICE=cuda (see docs/gpu.md)"));
        return rows;
    }

    private static string Library(Kiln.Cuda.CudaLibraryKind kind, Func<string> version)
    {
        try { return $"{version()} ({Kiln.Cuda.CudaLibraries.LoadedFrom(kind)})"; }
        catch (Exception e) { return $"unavailable: {e.Message.Split('\n')[0]}"; }
    }

    internal static string SimdDescription()
    {
        string widest = Vector512.IsHardwareAccelerated ? "AVX-512 (512-bit)"
            : Vector256.IsHardwareAccelerated ? "AVX2 (256-bit)"
            : Vector128.IsHardwareAccelerated ? "128-bit" : "none";
        return $"{widest}; Vector<float> = {Vector<float>.Count} lanes; FMA {(System.Runtime.Intrinsics.X86.Fma.IsSupported ? "yes" : "no")}";
    }
}
