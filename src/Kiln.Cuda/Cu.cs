// The one check every driver call goes through, and the status names used in error messages.
using System.Runtime.InteropServices;
using Kiln.Cuda.Native;

namespace Kiln.Cuda;

public static unsafe class Cu
{
    private static readonly Lock InitGate = new();
    private static volatile bool _initialized;

    /// <summary>Throws CudaException naming the call, the status name and its description unless
    /// <paramref name="status"/> is CUDA_SUCCESS.</summary>
    public static void Check(int status, string call, string? detail = null)
    {
        if (status != CuConst.CUDA_SUCCESS) throw Error(status, call, detail);
    }

    public static CudaException Error(int status, string call, string? detail = null) =>
        new(call, status, StatusName(status), StatusDescription(status), detail);

    /// <summary>loads the driver and runs cuInit(0) once per process.</summary>
    public static void EnsureInitialized()
    {
        if (_initialized) return;
        lock (InitGate)
        {
            if (_initialized) return;
            CudaLibraries.Load(CudaLibraryKind.Driver);
            Check(CuNative.cuInit(0), "cuInit");
            _initialized = true;
        }
    }

    /// <summary>Driver version as the driver reports it (e.g. 13000 for CUDA 13.0).</summary>
    public static int DriverVersion
    {
        get
        {
            EnsureInitialized();
            int v;
            Check(CuNative.cuDriverGetVersion(&v), "cuDriverGetVersion");
            return v;
        }
    }

    /// <summary>"13.0" from 13000.</summary>
    public static string FormatVersion(int v) => $"{v / 1000}.{v % 1000 / 10}";

    /// <summary>The CUresult's name: from cuGetErrorName when the driver is loaded, else from Kiln's table,
    /// else "CUresult N".</summary>
    public static string StatusName(int status)
    {
        if (DriverLoaded())
        {
            byte* s = null;
            if (CuNative.cuGetErrorName(status, &s) == CuConst.CUDA_SUCCESS && s != null)
                return Marshal.PtrToStringUTF8((IntPtr)s) ?? KnownName(status);
        }
        return KnownName(status);
    }

    public static string StatusDescription(int status)
    {
        if (DriverLoaded())
        {
            byte* s = null;
            if (CuNative.cuGetErrorString(status, &s) == CuConst.CUDA_SUCCESS && s != null)
                return Marshal.PtrToStringUTF8((IntPtr)s) ?? "(no description)";
        }
        return KnownNames.ContainsKey(status) ? "(driver not loaded; no description)" : "unrecognized CUDA driver status";
    }

    private static bool DriverLoaded() => CudaLibraries.LoadedFrom(CudaLibraryKind.Driver) != null;

    internal static string KnownName(int status) => KnownNames.TryGetValue(status, out var n) ? n : $"CUresult {status}";

    // CUresult values (cuda.h), for messages when the driver itself is unavailable.
    private static readonly Dictionary<int, string> KnownNames = new()
    {
        [0] = "CUDA_SUCCESS",
        [1] = "CUDA_ERROR_INVALID_VALUE",
        [2] = "CUDA_ERROR_OUT_OF_MEMORY",
        [3] = "CUDA_ERROR_NOT_INITIALIZED",
        [4] = "CUDA_ERROR_DEINITIALIZED",
        [34] = "CUDA_ERROR_STUB_LIBRARY",
        [46] = "CUDA_ERROR_DEVICE_UNAVAILABLE",
        [100] = "CUDA_ERROR_NO_DEVICE",
        [101] = "CUDA_ERROR_INVALID_DEVICE",
        [200] = "CUDA_ERROR_INVALID_IMAGE",
        [201] = "CUDA_ERROR_INVALID_CONTEXT",
        [209] = "CUDA_ERROR_NO_BINARY_FOR_GPU",
        [218] = "CUDA_ERROR_INVALID_PTX",
        [222] = "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
        [400] = "CUDA_ERROR_INVALID_HANDLE",
        [500] = "CUDA_ERROR_NOT_FOUND",
        [600] = "CUDA_ERROR_NOT_READY",
        [700] = "CUDA_ERROR_ILLEGAL_ADDRESS",
        [701] = "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
        [702] = "CUDA_ERROR_LAUNCH_TIMEOUT",
        [719] = "CUDA_ERROR_LAUNCH_FAILED",
        [801] = "CUDA_ERROR_NOT_SUPPORTED",
        [900] = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
        [901] = "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
        [999] = "CUDA_ERROR_UNKNOWN",
    };
}

/// <summary>NVRTC status check.</summary>
public static unsafe class Nvrtc
{
    public static void Check(int status, string call, string? log = null)
    {
        if (status != NvrtcNative.NVRTC_SUCCESS) throw Error(status, call, log);
    }

    public static CudaException Error(int status, string call, string? log = null)
    {
        var name = StatusName(status);
        return new CudaException(call, status, name, Describe(status), null, log);
    }

    public static string StatusName(int status)
    {
        if (CudaLibraries.LoadedFrom(CudaLibraryKind.Nvrtc) != null)
        {
            var s = NvrtcNative.nvrtcGetErrorString(status);
            if (s != null) return Marshal.PtrToStringUTF8((IntPtr)s) ?? KnownName(status);
        }
        return KnownName(status);
    }

    internal static string KnownName(int status) => status switch
    {
        0 => "NVRTC_SUCCESS",
        1 => "NVRTC_ERROR_OUT_OF_MEMORY",
        2 => "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
        3 => "NVRTC_ERROR_INVALID_INPUT",
        4 => "NVRTC_ERROR_INVALID_PROGRAM",
        5 => "NVRTC_ERROR_INVALID_OPTION",
        6 => "NVRTC_ERROR_COMPILATION",
        7 => "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
        11 => "NVRTC_ERROR_INTERNAL_ERROR",
        _ => $"nvrtcResult {status}",
    };

    private static string Describe(int status) => status switch
    {
        6 => "the CUDA C source did not compile (log below)",
        5 => "an option was rejected (NVRTC 13 rejects -O3, for example)",
        _ => "NVRTC call failed",
    };

    /// <summary>NVRTC version (major, minor).</summary>
    public static (int Major, int Minor) Version
    {
        get
        {
            CudaLibraries.Load(CudaLibraryKind.Nvrtc);
            int major, minor;
            Check(NvrtcNative.nvrtcVersion(&major, &minor), "nvrtcVersion");
            return (major, minor);
        }
    }
}
