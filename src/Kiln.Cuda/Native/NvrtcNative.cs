// NVRTC (libnvrtc.so.13 / .12), signatures from nvrtc.h. nvrtcResult is int; nvrtcProgram is IntPtr.
using System.Runtime.InteropServices;

namespace Kiln.Cuda.Native;

internal static unsafe partial class NvrtcNative
{
    static NvrtcNative() => CudaLibraries.EnsureResolver();
    private const string Lib = CudaLibraries.NvrtcName;

    public const int NVRTC_SUCCESS = 0;
    public const int NVRTC_ERROR_COMPILATION = 6;

    [LibraryImport(Lib)] internal static partial byte* nvrtcGetErrorString(int result);
    [LibraryImport(Lib)] internal static partial int nvrtcVersion(int* major, int* minor);
    [LibraryImport(Lib)] internal static partial int nvrtcCreateProgram(IntPtr* prog, byte* src, byte* name,
        int numHeaders, byte** headers, byte** includeNames);
    [LibraryImport(Lib)] internal static partial int nvrtcDestroyProgram(IntPtr* prog);
    [LibraryImport(Lib)] internal static partial int nvrtcCompileProgram(IntPtr prog, int numOptions, byte** options);
    [LibraryImport(Lib)] internal static partial int nvrtcGetProgramLogSize(IntPtr prog, nuint* size);
    [LibraryImport(Lib)] internal static partial int nvrtcGetProgramLog(IntPtr prog, byte* log);
    [LibraryImport(Lib)] internal static partial int nvrtcGetCUBINSize(IntPtr prog, nuint* size);
    [LibraryImport(Lib)] internal static partial int nvrtcGetCUBIN(IntPtr prog, byte* cubin);
    [LibraryImport(Lib)] internal static partial int nvrtcGetPTXSize(IntPtr prog, nuint* size);
    [LibraryImport(Lib)] internal static partial int nvrtcGetPTX(IntPtr prog, byte* ptx);
}
