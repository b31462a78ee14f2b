// cuBLASLt: a handle with a workspace, the status check, and a row-major GEMM helper.
using System.Runtime.InteropServices;
using Kiln.Cuda.Native;

namespace Kiln.Cuda;

public sealed unsafe class CublasLt : IDisposable
{
    public CudaContext Context { get; }
    public IntPtr Handle { get; private set; }
    public DeviceBuffer Workspace { get; }

    public CublasLt(CudaContext context, long workspaceBytes = 32L << 20)
    {
        Context = context;
        context.MakeCurrent();
        CudaLibraries.Load(CudaLibraryKind.CublasLt);
        IntPtr h;
        Check(CublasLtNative.cublasLtCreate(&h), "cublasLtCreate");
        Handle = h;
        Workspace = DeviceBuffer.Allocate(context, workspaceBytes);
    }

    /// <summary>cublasLtGetVersion: major*10000 + minor*100 + patch (e.g. 130100).</summary>
    public static long Version
    {
        get
        {
            CudaLibraries.Load(CudaLibraryKind.CublasLt);
            return (long)CublasLtNative.cublasLtGetVersion();
        }
    }

    public static string FormatVersion(long v) => $"{v / 10000}.{v % 10000 / 100}.{v % 100}";

    public static void Check(int status, string call, string? detail = null)
    {
        if (status != 0) throw new CudaException(call, status, StatusName(status), StatusDescription(status), detail);
    }

    public static string StatusName(int status)
    {
        if (CudaLibraries.LoadedFrom(CudaLibraryKind.CublasLt) != null)
        {
            try
            {
                var s = CublasLtNative.cublasLtGetStatusName(status);
                if (s != null) return Marshal.PtrToStringUTF8((IntPtr)s) ?? KnownName(status);
            }
            catch (EntryPointNotFoundException) { }
        }
        return KnownName(status);
    }

    private static string StatusDescription(int status)
    {
        if (CudaLibraries.LoadedFrom(CudaLibraryKind.CublasLt) != null)
        {
            try
            {
                var s = CublasLtNative.cublasLtGetStatusString(status);
                if (s != null) return Marshal.PtrToStringUTF8((IntPtr)s) ?? "cuBLASLt call failed";
            }
            catch (EntryPointNotFoundException) { }
        }
        return "cuBLASLt call failed";
    }

    internal static string KnownName(int status) => status switch
    {
        0 => "CUBLAS_STATUS_SUCCESS",
        1 => "CUBLAS_STATUS_NOT_INITIALIZED",
        3 => "CUBLAS_STATUS_ALLOC_FAILED",
        7 => "CUBLAS_STATUS_INVALID_VALUE",
        8 => "CUBLAS_STATUS_ARCH_MISMATCH",
        11 => "CUBLAS_STATUS_MAPPING_ERROR",
        13 => "CUBLAS_STATUS_EXECUTION_FAILED",
        14 => "CUBLAS_STATUS_INTERNAL_ERROR",
        15 => "CUBLAS_STATUS_NOT_SUPPORTED",
        16 => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => $"cublasStatus_t {status}",
    };

    /// <summary>Row-major D[m,n] = alpha * A[m,k] @ B[k,n] + beta * D, all matrices dense and of type
    /// <paramref name="type"/>, alpha/beta and accumulation in fp32 (or <paramref name="compute"/>).
    /// Done as the column-major product D^T = B^T A^T, which is the same memory: no transposes.</summary>
    public void MatmulRowMajor(int m, int n, int k, CudaDataType type, ulong a, ulong b, ulong d,
        float alpha = 1f, float beta = 0f, CudaStream? stream = null,
        CublasComputeType compute = CublasComputeType.Compute32F, CublasLtEpilogue epilogue = CublasLtEpilogue.Default,
        ulong bias = 0)
    {
        // Column-major view: D'(n x m, ld n) = A'(n x k, ld n) @ B'(k x m, ld k), A' = row-major B, B' = row-major A.
        Matmul(CublasOperation.N, CublasOperation.N, n, m, k, type, b, n, a, k, d, n, alpha, beta, stream, compute, epilogue, bias);
    }

    /// <summary>Column-major D[m,n] = alpha * op(A) @ op(B) + beta * C with C = D (cuBLAS conventions;
    /// lda/ldb/ldd in elements). The bias, when set with a bias epilogue, has m elements.</summary>
    public void Matmul(CublasOperation transA, CublasOperation transB, int m, int n, int k, CudaDataType type,
        ulong a, long lda, ulong b, long ldb, ulong d, long ldd, float alpha = 1f, float beta = 0f,
        CudaStream? stream = null, CublasComputeType compute = CublasComputeType.Compute32F,
        CublasLtEpilogue epilogue = CublasLtEpilogue.Default, ulong bias = 0)
    {
        Context.MakeCurrent();
        IntPtr desc = 0, la = 0, lb = 0, ld = 0, pref = 0;
        try
        {
            Check(CublasLtNative.cublasLtMatmulDescCreate(&desc, (int)compute, (int)CudaDataType.R32F), "cublasLtMatmulDescCreate");
            int ta = (int)transA, tb = (int)transB;
            Check(CublasLtNative.cublasLtMatmulDescSetAttribute(desc, (int)CublasLtMatmulDescAttribute.TransA, &ta, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSA)");
            Check(CublasLtNative.cublasLtMatmulDescSetAttribute(desc, (int)CublasLtMatmulDescAttribute.TransB, &tb, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSB)");
            if (epilogue != CublasLtEpilogue.Default)
            {
                uint ep = (uint)epilogue;
                Check(CublasLtNative.cublasLtMatmulDescSetAttribute(desc, (int)CublasLtMatmulDescAttribute.Epilogue, &ep, sizeof(uint)), "cublasLtMatmulDescSetAttribute(EPILOGUE)");
            }
            if (bias != 0)
            {
                ulong bp = bias;
                Check(CublasLtNative.cublasLtMatmulDescSetAttribute(desc, (int)CublasLtMatmulDescAttribute.BiasPointer, &bp, (nuint)sizeof(ulong)), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
            }
            int aRows = transA == CublasOperation.N ? m : k, aCols = transA == CublasOperation.N ? k : m;
            int bRows = transB == CublasOperation.N ? k : n, bCols = transB == CublasOperation.N ? n : k;
            Check(CublasLtNative.cublasLtMatrixLayoutCreate(&la, (int)type, (ulong)aRows, (ulong)aCols, lda), "cublasLtMatrixLayoutCreate(A)");
            Check(CublasLtNative.cublasLtMatrixLayoutCreate(&lb, (int)type, (ulong)bRows, (ulong)bCols, ldb), "cublasLtMatrixLayoutCreate(B)");
            Check(CublasLtNative.cublasLtMatrixLayoutCreate(&ld, (int)type, (ulong)m, (ulong)n, ldd), "cublasLtMatrixLayoutCreate(D)");
            Check(CublasLtNative.cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
            ulong ws = (ulong)Workspace.Bytes;
            Check(CublasLtNative.cublasLtMatmulPreferenceSetAttribute(pref, (int)CublasLtPreferenceAttribute.MaxWorkspaceBytes, &ws, sizeof(ulong)), "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");

            CublasLtHeuristicResult result;
            int found = 0;
            Check(CublasLtNative.cublasLtMatmulAlgoGetHeuristic(Handle, desc, la, lb, ld, ld, pref, 1, &result, &found),
                "cublasLtMatmulAlgoGetHeuristic", $"m={m} n={n} k={k} {type} {compute}");
            if (found == 0)
                throw new CudaException("cublasLtMatmulAlgoGetHeuristic", 15, KnownName(15),
                    "no algorithm for this problem", $"m={m} n={n} k={k} {type} {compute} epilogue {epilogue}");
            Check(CublasLtNative.cublasLtMatmul(Handle, desc, &alpha, a, la, b, lb, &beta, d, ld, d, ld,
                &result.Algo, Workspace.Pointer, (nuint)Workspace.Bytes, CudaStream.Of(stream)),
                "cublasLtMatmul", $"m={m} n={n} k={k} {type} {compute}");
        }
        finally
        {
            if (pref != 0) CublasLtNative.cublasLtMatmulPreferenceDestroy(pref);
            if (ld != 0) CublasLtNative.cublasLtMatrixLayoutDestroy(ld);
            if (lb != 0) CublasLtNative.cublasLtMatrixLayoutDestroy(lb);
            if (la != 0) CublasLtNative.cublasLtMatrixLayoutDestroy(la);
            if (desc != 0) CublasLtNative.cublasLtMatmulDescDestroy(desc);
        }
    }

    /// <summary>Sets a layout attribute (e.g. ORDER = ROW, BATCH_COUNT) on a raw layout descriptor.</summary>
    internal static void SetLayout<T>(IntPtr layout, CublasLtLayoutAttribute attr, T value) where T : unmanaged =>
        Check(CublasLtNative.cublasLtMatrixLayoutSetAttribute(layout, (int)attr, &value, (nuint)sizeof(T)),
            $"cublasLtMatrixLayoutSetAttribute({attr})");

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        Context.MakeCurrent();
        Workspace.Dispose();
        Check(CublasLtNative.cublasLtDestroy(Handle), "cublasLtDestroy");
        Handle = IntPtr.Zero;
    }
}
