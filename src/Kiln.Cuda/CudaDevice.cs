// A CUDA device's identity and properties, and whether CUDA can be used at all in this process.
using System.Runtime.InteropServices;
using Kiln.Cuda.Native;

namespace Kiln.Cuda;

public sealed unsafe class CudaDevice
{
    public int Index { get; }
    public string Name { get; }
    public (int Major, int Minor) ComputeCapability { get; }
    public int SmCount { get; }
    public long TotalMemory { get; }
    public int MaxThreadsPerBlock { get; }

    /// <summary>The NVRTC real architecture for this device, e.g. <c>sm_90</c> on an H100.</summary>
    public string Arch => $"sm_{ComputeCapability.Major}{ComputeCapability.Minor}";

    internal int Handle { get; }

    private CudaDevice(int index)
    {
        Index = index;
        int dev;
        Cu.Check(CuNative.cuDeviceGet(&dev, index), "cuDeviceGet", $"device index {index}");
        Handle = dev;
        var name = stackalloc byte[256];
        Cu.Check(CuNative.cuDeviceGetName(name, 256, dev), "cuDeviceGetName");
        Name = Marshal.PtrToStringUTF8((IntPtr)name) ?? "?";
        nuint total;
        Cu.Check(CuNative.cuDeviceTotalMem_v2(&total, dev), "cuDeviceTotalMem_v2");
        TotalMemory = (long)total;
        ComputeCapability = (Attribute(CuConst.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            Attribute(CuConst.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR));
        SmCount = Attribute(CuConst.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        MaxThreadsPerBlock = Attribute(CuConst.CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
    }

    /// <summary>A raw CUdevice_attribute value (see cuda.h).</summary>
    public int Attribute(int attribute)
    {
        int v;
        Cu.Check(CuNative.cuDeviceGetAttribute(&v, attribute, Handle), "cuDeviceGetAttribute", $"attribute {attribute}");
        return v;
    }

    private static readonly Lock Gate = new();
    private static readonly Dictionary<int, CudaDevice> Devices = new();

    /// <summary>Device <paramref name="index"/> (0-based). Throws CudaException when CUDA or the device is missing.</summary>
    public static CudaDevice Get(int index = 0)
    {
        Cu.EnsureInitialized();
        lock (Gate)
        {
            if (Devices.TryGetValue(index, out var d)) return d;
            int count = Count;
            if (index < 0 || index >= count)
                throw new ArgumentOutOfRangeException(nameof(index), $"CUDA device {index} does not exist ({count} device(s) found)");
            return Devices[index] = new CudaDevice(index);
        }
    }

    /// <summary>Number of CUDA devices. Throws CudaException when the driver is missing or fails.</summary>
    public static int Count
    {
        get
        {
            Cu.EnsureInitialized();
            int n;
            Cu.Check(CuNative.cuDeviceGetCount(&n), "cuDeviceGetCount");
            return n;
        }
    }

    private static readonly Lazy<string?> Probe = new(() =>
    {
        try
        {
            Cu.EnsureInitialized();
            int n = Count;
            return n > 0 ? null : "the CUDA driver found no GPU (cuDeviceGetCount returned 0)";
        }
        catch (CudaLibraryNotFoundException e) { return "no CUDA driver: " + e.Message; }
        catch (Exception e) { return e.Message; }
    });

    /// <summary>True when the CUDA driver loads, initializes and reports at least one GPU. Never throws.</summary>
    public static bool IsAvailable => Probe.Value is null;

    /// <summary>Why CUDA is unavailable (null when it is available); for a missing library this lists
    /// every place searched.</summary>
    public static string? UnavailableReason => Probe.Value;

    /// <summary>The first line of <see cref="UnavailableReason"/> (null when available).</summary>
    public static string? UnavailableSummary => Probe.Value?.Split('\n')[0];

    public override string ToString() =>
        $"cuda:{Index} {Name} (sm_{ComputeCapability.Major}{ComputeCapability.Minor}, {SmCount} SMs, {Bytes.Format(TotalMemory)})";
}

internal static class Bytes
{
    public static string Format(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double v = bytes;
        int u = 0;
        while (Math.Abs(v) >= 1024 && u < units.Length - 1) { v /= 1024; u++; }
        return u == 0 ? $"{bytes} B" : $"{v:0.##} {units[u]}";
    }
}
