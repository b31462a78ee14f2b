// cuBLASLt (libcublasLt.so.13 / .12), signatures from cublasLt.h. cublasStatus_t is int; handles and
// descriptors are IntPtr; uint64_t/int64_t are ulong/long; size_t is nuint.
using System.Runtime.InteropServices;

namespace Kiln.Cuda.Native;

internal static unsafe partial class CublasLtNative
{
    static CublasLtNative() => CudaLibraries.EnsureResolver();
    private const string Lib = CudaLibraries.CublasLtName;

    [LibraryImport(Lib)] internal static partial int cublasLtCreate(IntPtr* handle);
    [LibraryImport(Lib)] internal static partial int cublasLtDestroy(IntPtr handle);
    [LibraryImport(Lib)] internal static partial nuint cublasLtGetVersion();
    [LibraryImport(Lib)] internal static partial byte* cublasLtGetStatusName(int status);
    [LibraryImport(Lib)] internal static partial byte* cublasLtGetStatusString(int status);

    [LibraryImport(Lib)] internal static partial int cublasLtMatmulDescCreate(IntPtr* desc, int computeType, int scaleType);
    [LibraryImport(Lib)] internal static partial int cublasLtMatmulDescSetAttribute(IntPtr desc, int attr, void* buf, nuint size);
    [LibraryImport(Lib)] internal static partial int cublasLtMatmulDescDestroy(IntPtr desc);

    [LibraryImport(Lib)] internal static partial int cublasLtMatrixLayoutCreate(IntPtr* layout, int type, ulong rows, ulong cols, long ld);
    [LibraryImport(Lib)] internal static partial int cublasLtMatrixLayoutSetAttribute(IntPtr layout, int attr, void* buf, nuint size);
    [LibraryImport(Lib)] internal static partial int cublasLtMatrixLayoutDestroy(IntPtr layout);

    [LibraryImport(Lib)] internal static partial int cublasLtMatmulPreferenceCreate(IntPtr* pref);
    [LibraryImport(Lib)] internal static partial int cublasLtMatmulPreferenceSetAttribute(IntPtr pref, int attr, void* buf, nuint size);
    [LibraryImport(Lib)] internal static partial int cublasLtMatmulPreferenceDestroy(IntPtr pref);

    [LibraryImport(Lib)] internal static partial int cublasLtMatmulAlgoGetHeuristic(IntPtr handle, IntPtr operationDesc,
        IntPtr aDesc, IntPtr bDesc, IntPtr cDesc, IntPtr dDesc, IntPtr preference, int requestedAlgoCount,
        CublasLtHeuristicResult* results, int* returnAlgoCount);

    [LibraryImport(Lib)] internal static partial int cublasLtMatmul(IntPtr handle, IntPtr computeDesc,
        void* alpha, ulong a, IntPtr aDesc, ulong b, IntPtr bDesc, void* beta, ulong c, IntPtr cDesc,
        ulong d, IntPtr dDesc, CublasLtMatmulAlgo* algo, ulong workspace, nuint workspaceSize, IntPtr stream);
}

/// <summary>cublasLtMatmulAlgo_t: opaque, 8 x uint64 (64 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Size = 64)]
internal unsafe struct CublasLtMatmulAlgo
{
    public fixed ulong Data[8];
}

/// <summary>cublasLtMatmulHeuristicResult_t: algo (64 bytes), size_t workspaceSize, cublasStatus_t state,
/// float wavesCount, int reserved[4]: 96 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CublasLtHeuristicResult
{
    public CublasLtMatmulAlgo Algo;
    public nuint WorkspaceSize;
    public int State;
    public float WavesCount;
    public fixed int Reserved[4];
}
