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
            table.AddRow("cuda", "not built into this version (CPU backend only)");
            AnsiConsole.Write(table);
            return 0;
        });
        return cmd;
    }

    internal static string SimdDescription()
    {
        string widest = Vector512.IsHardwareAccelerated ? "AVX-512 (512-bit)"
            : Vector256.IsHardwareAccelerated ? "AVX2 (256-bit)"
            : Vector128.IsHardwareAccelerated ? "128-bit" : "none";
        return $"{widest}; Vector<float> = {Vector<float>.Count} lanes; FMA {(System.Runtime.Intrinsics.X86.Fma.IsSupported ? "yes" : "no")}";
    }
}
