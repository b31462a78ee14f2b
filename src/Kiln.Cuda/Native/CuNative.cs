// CUDA driver API (libcuda.so.1), as exported by the CUDA 12/13 drivers. Versioned entry points (_v2) are
// named explicitly: the header's macros map the plain names onto them. CUresult is int; CUdeviceptr is
// ulong; handles are IntPtr; size_t is nuint. Signatures follow cuda.h (CUDA 13.0).
using System.Runtime.InteropServices;

namespace Kiln.Cuda.Native;

internal static unsafe partial class CuNative
{
    static CuNative() => CudaLibraries.EnsureResolver();
    private const string Lib = CudaLibraries.DriverName;

    // Initialization, versions, errors
    [LibraryImport(Lib)] internal static partial int cuInit(uint flags);
    [LibraryImport(Lib)] internal static partial int cuDriverGetVersion(int* version);
    [LibraryImport(Lib)] internal static partial int cuGetErrorName(int error, byte** str);
    [LibraryImport(Lib)] internal static partial int cuGetErrorString(int error, byte** str);

    // Devices
    [LibraryImport(Lib)] internal static partial int cuDeviceGetCount(int* count);
    [LibraryImport(Lib)] internal static partial int cuDeviceGet(int* device, int ordinal);
    [LibraryImport(Lib)] internal static partial int cuDeviceGetName(byte* name, int len, int device);
    [LibraryImport(Lib)] internal static partial int cuDeviceTotalMem_v2(nuint* bytes, int device);
    [LibraryImport(Lib)] internal static partial int cuDeviceGetAttribute(int* value, int attribute, int device);

    // Contexts
    [LibraryImport(Lib)] internal static partial int cuDevicePrimaryCtxRetain(IntPtr* ctx, int device);
    [LibraryImport(Lib)] internal static partial int cuDevicePrimaryCtxRelease_v2(int device);
    [LibraryImport(Lib)] internal static partial int cuCtxSetCurrent(IntPtr ctx);
    [LibraryImport(Lib)] internal static partial int cuCtxGetCurrent(IntPtr* ctx);
    [LibraryImport(Lib)] internal static partial int cuCtxSynchronize();

    // Streams
    [LibraryImport(Lib)] internal static partial int cuStreamCreate(IntPtr* stream, uint flags);
    [LibraryImport(Lib)] internal static partial int cuStreamDestroy_v2(IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuStreamSynchronize(IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuStreamWaitEvent(IntPtr stream, IntPtr ev, uint flags);

    // Events (cuEventElapsedTime is resolved at run time: CUDA 12.8+ drivers add _v2, and CUDA 13 headers
    // map the plain name onto it; see CudaEvent.ElapsedMs)
    [LibraryImport(Lib)] internal static partial int cuEventCreate(IntPtr* ev, uint flags);
    [LibraryImport(Lib)] internal static partial int cuEventRecord(IntPtr ev, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuEventSynchronize(IntPtr ev);
    [LibraryImport(Lib)] internal static partial int cuEventDestroy_v2(IntPtr ev);

    // Memory
    [LibraryImport(Lib)] internal static partial int cuMemAlloc_v2(ulong* dptr, nuint bytes);
    [LibraryImport(Lib)] internal static partial int cuMemFree_v2(ulong dptr);
    [LibraryImport(Lib)] internal static partial int cuMemAllocAsync(ulong* dptr, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuMemFreeAsync(ulong dptr, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuMemGetInfo_v2(nuint* free, nuint* total);
    [LibraryImport(Lib)] internal static partial int cuMemcpyHtoD_v2(ulong dst, void* src, nuint bytes);
    [LibraryImport(Lib)] internal static partial int cuMemcpyDtoH_v2(void* dst, ulong src, nuint bytes);
    [LibraryImport(Lib)] internal static partial int cuMemcpyDtoD_v2(ulong dst, ulong src, nuint bytes);
    [LibraryImport(Lib)] internal static partial int cuMemcpyHtoDAsync_v2(ulong dst, void* src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuMemcpyDtoHAsync_v2(void* dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuMemcpyDtoDAsync_v2(ulong dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuMemsetD8_v2(ulong dst, byte value, nuint count);

    // Modules and launches
    [LibraryImport(Lib)] internal static partial int cuModuleLoadData(IntPtr* module, void* image);
    [LibraryImport(Lib)] internal static partial int cuModuleGetFunction(IntPtr* function, IntPtr module, byte* name);
    [LibraryImport(Lib)] internal static partial int cuModuleUnload(IntPtr module);
    [LibraryImport(Lib)] internal static partial int cuLaunchKernel(IntPtr f, uint gridX, uint gridY, uint gridZ,
        uint blockX, uint blockY, uint blockZ, uint sharedMemBytes, IntPtr stream, void** kernelParams, void** extra);

    // Graphs through stream capture
    [LibraryImport(Lib)] internal static partial int cuStreamBeginCapture_v2(IntPtr stream, int mode);
    [LibraryImport(Lib)] internal static partial int cuStreamEndCapture(IntPtr stream, IntPtr* graph);
    [LibraryImport(Lib)] internal static partial int cuGraphInstantiateWithFlags(IntPtr* graphExec, IntPtr graph, ulong flags);
    [LibraryImport(Lib)] internal static partial int cuGraphLaunch(IntPtr graphExec, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuGraphExecDestroy(IntPtr graphExec);
    [LibraryImport(Lib)] internal static partial int cuGraphDestroy(IntPtr graph);
    [LibraryImport(Lib)] internal static partial int cuGraphGetNodes(IntPtr graph, IntPtr* nodes, nuint* count);
    // The node a captured launch became (the stream's current dependency set right after it) and rebinding
    // its arguments in an instantiated graph (CUDA 12.3+ drivers).
    [LibraryImport(Lib)] internal static partial int cuStreamGetCaptureInfo_v3(IntPtr stream, int* status, ulong* id, IntPtr* graph,
        IntPtr** dependencies, IntPtr* edgeData, nuint* count);
    [LibraryImport(Lib)] internal static partial int cuGraphExecKernelNodeSetParams_v2(IntPtr graphExec, IntPtr node, KernelNodeParams* p);
}

/// <summary>CUDA_KERNEL_NODE_PARAMS_v2 (cuda.h, CUDA 12.0+): 72 bytes on 64-bit.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct KernelNodeParams
{
    public IntPtr Func;
    public uint GridX, GridY, GridZ, BlockX, BlockY, BlockZ, SharedMemBytes;
    public void** KernelParams;
    public void** Extra;
    public IntPtr Kern;
    public IntPtr Ctx;
}

/// <summary>Numeric values from cuda.h (CUDA 13.0) used by Kiln.</summary>
internal static class CuConst
{
    public const int CUDA_SUCCESS = 0;
    public const int CUDA_ERROR_OUT_OF_MEMORY = 2;
    public const int CUDA_ERROR_NO_DEVICE = 100;

    // CUdevice_attribute
    public const int CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1;
    public const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;

    // CUstream_flags
    public const uint CU_STREAM_DEFAULT = 0;
    public const uint CU_STREAM_NON_BLOCKING = 1;

    // CUevent_flags
    public const uint CU_EVENT_DEFAULT = 0;
    public const uint CU_EVENT_DISABLE_TIMING = 2;
}
