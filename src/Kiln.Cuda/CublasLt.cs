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

    /// <summary>Row-major D[m,n] = alpha * op(A)[m,k] @ op(B)[k,n] + beta * D, all matrices of type
    /// <paramref name="type"/>, alpha/beta and accumulation in fp32 (or <paramref name="compute"/>). A is stored
    /// row-major [m,k], or [k,m] when <paramref name="aTransposed"/> (a transposed view needs no copy); B likewise
    /// [k,n] or [n,k]. Done as the column-major product D^T = op(B)^T op(A)^T, which is the same memory.</summary>
    public void MatmulRowMajor(int m, int n, int k, CudaDataType type, ulong a, ulong b, ulong d,
        float alpha = 1f, float beta = 0f, CudaStream? stream = null,
        CublasComputeType compute = CublasComputeType.Compute32F, CublasLtEpilogue epilogue = CublasLtEpilogue.Default,
        ulong bias = 0, bool aTransposed = false, bool bTransposed = false, ulong aux = 0, bool tune = false)
    {
        // Column-major view: D'(n x m, ld n) = B'(n x k) @ A'(k x m). Row-major B [k,n] is column-major n x k
        // with ld n (no op); row-major [n,k] (B transposed) is column-major k x n with ld k, so op T.
        Matmul(bTransposed ? CublasOperation.T : CublasOperation.N, aTransposed ? CublasOperation.T : CublasOperation.N, n, m, k, type,
            b, bTransposed ? k : n, a, aTransposed ? m : k, d, n, alpha, beta, stream, compute, epilogue, bias, aux, aux == 0 ? 0 : n, tune);
    }

    /// <summary>What a GEMM's descriptors and chosen algorithm depend on (pointers only through their alignment).</summary>
    private readonly record struct GemmKey(CublasOperation TransA, CublasOperation TransB, int M, int N, int K, CudaDataType Type,
        long Lda, long Ldb, long Ldd, CublasComputeType Compute, CublasLtEpilogue Epilogue, bool Bias, uint AlignA, uint AlignB, uint AlignD, long AuxLd);

    /// <summary>Descriptors, layouts and the heuristic's algorithm for one GemmKey, made once (the heuristic
    /// query alone costs tens of µs of host time) and kept for the handle's life.</summary>
    private sealed class GemmPlan
    {
        public IntPtr Desc, A, B, D;
        public CublasLtMatmulAlgo Algo;
        /// <summary>The heuristic's other candidates, still to be timed once (epilogues whose first pick is slow).</summary>
        public CublasLtMatmulAlgo[]? Candidates;
    }

    private readonly Dictionary<GemmKey, GemmPlan> _plans = new();
    private readonly Dictionary<IntPtr, DeviceBuffer> _streamWorkspaces = new();

    /// <summary>The workspace GEMMs on <paramref name="stream"/> use: each stream its own (same size), so GEMMs
    /// running at once on forked streams never share scratch memory.</summary>
    /// <summary>Allocates <paramref name="stream"/>'s workspace now (not allowed later, inside a stream capture).</summary>
    public void EnsureWorkspace(CudaStream stream)
    {
        lock (_gate) WorkspaceFor(stream);
    }

    private DeviceBuffer WorkspaceFor(CudaStream? stream)
    {
        var h = CudaStream.Of(stream);
        if (h == IntPtr.Zero) return Workspace;
        if (!_streamWorkspaces.TryGetValue(h, out var ws)) _streamWorkspaces[h] = ws = DeviceBuffer.Allocate(Context, Workspace.Bytes);
        return ws;
    }
    private readonly Lock _gate = new();

    /// <summary>The largest power of two up to 256 dividing <paramref name="p"/>: cuBLASLt assumes 256 unless told.</summary>
    private static uint Alignment(ulong p) => p == 0 ? 256u : (uint)Math.Min(256UL, p & (~p + 1));

    /// <summary>Column-major D[m,n] = alpha * op(A) @ op(B) + beta * C with C = D (cuBLAS conventions;
    /// lda/ldb/ldd in elements). The bias, when set with a bias epilogue, has m elements; the auxiliary matrix of a
    /// DGELU epilogue (the forward's pre-activation) is laid out as D with leading dimension <paramref name="auxLd"/>.</summary>
    public void Matmul(CublasOperation transA, CublasOperation transB, int m, int n, int k, CudaDataType type,
        ulong a, long lda, ulong b, long ldb, ulong d, long ldd, float alpha = 1f, float beta = 0f,
        CudaStream? stream = null, CublasComputeType compute = CublasComputeType.Compute32F,
        CublasLtEpilogue epilogue = CublasLtEpilogue.Default, ulong bias = 0, ulong aux = 0, long auxLd = 0, bool tune = false)
    {
        Context.MakeCurrent();
        var key = new GemmKey(transA, transB, m, n, k, type, lda, ldb, ldd, compute, epilogue, bias != 0, Alignment(a), Alignment(b), Alignment(d), aux == 0 ? 0 : auxLd);
        lock (_gate)
        {
            if (!_plans.TryGetValue(key, out var plan)) _plans[key] = plan = CreatePlan(key);
            if (bias != 0)
            {
                ulong bp = bias;
                Check(CublasLtNative.cublasLtMatmulDescSetAttribute(plan.Desc, (int)CublasLtMatmulDescAttribute.BiasPointer, &bp, (nuint)sizeof(ulong)), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
            }
            if (aux != 0)
            {
                ulong xp = aux;
                Check(CublasLtNative.cublasLtMatmulDescSetAttribute(plan.Desc, (int)CublasLtMatmulDescAttribute.EpilogueAuxPointer, &xp, (nuint)sizeof(ulong)), "cublasLtMatmulDescSetAttribute(EPILOGUE_AUX_POINTER)");
            }
            var ws = WorkspaceFor(stream);
            if (plan.Candidates is { } candidates && tune && beta == 0f)
            {
                plan.Algo = Fastest(plan, candidates, a, b, d, alpha, stream, ws);
                plan.Candidates = null;
            }
            var algo = plan.Algo;
            Check(CublasLtNative.cublasLtMatmul(Handle, plan.Desc, &alpha, a, plan.A, b, plan.B, &beta, d, plan.D, d, plan.D,
                &algo, ws.Pointer, (nuint)ws.Bytes, CudaStream.Of(stream)),
                "cublasLtMatmul", $"m={m} n={n} k={k} {type} {compute}");
        }
    }

    /// <summary>Epilogues whose heuristic candidates are timed on first use.</summary>
    private static bool TunedEpilogue(CublasLtEpilogue e) => e is CublasLtEpilogue.DGelu or CublasLtEpilogue.DGeluBGrad;

    /// <summary>
    /// Times each candidate algorithm on the call's own operands (one warm-up, then three runs between events) and
    /// returns the fastest. The output is overwritten by the real call after it (beta 0), so timing changes nothing;
    /// the caller makes sure the stream is not being captured.
    /// </summary>
    private CublasLtMatmulAlgo Fastest(GemmPlan plan, CublasLtMatmulAlgo[] candidates, ulong a, ulong b, ulong d, float alpha,
        CudaStream? stream, DeviceBuffer ws)
    {
        float beta = 0f;
        using var start = new CudaEvent(Context); using var end = new CudaEvent(Context);
        var best = candidates[0];
        float bestMs = float.MaxValue;
        foreach (var candidate in candidates)
        {
            var algo = candidate;
            int status = 0;
            for (int i = 0; i < 4 && status == 0; i++)   // the first run warms up, the other three are timed
            {
                if (i == 1) start.Record(stream);
                status = CublasLtNative.cublasLtMatmul(Handle, plan.Desc, &alpha, a, plan.A, b, plan.B, &beta, d, plan.D, d, plan.D,
                    &algo, ws.Pointer, (nuint)ws.Bytes, CudaStream.Of(stream));
            }
            if (status != 0) continue;   // a candidate that refuses these operands is no candidate
            end.Record(stream);
            end.Synchronize();
            float ms = CudaEvent.ElapsedMs(start, end);
            if (ms < bestMs) { bestMs = ms; best = candidate; }
        }
        return best;
    }

    private GemmPlan CreatePlan(GemmKey g)
    {
        var plan = new GemmPlan();
        IntPtr desc = 0, la = 0, lb = 0, ld = 0, pref = 0;
        bool ok = false;
        try
        {
            Check(CublasLtNative.cublasLtMatmulDescCreate(&desc, (int)g.Compute, (int)CudaDataType.R32F), "cublasLtMatmulDescCreate");
            int ta = (int)g.TransA, tb = (int)g.TransB;
            Check(CublasLtNative.cublasLtMatmulDescSetAttribute(desc, (int)CublasLtMatmulDescAttribute.TransA, &ta, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSA)");
            Check(CublasLtNative.cublasLtMatmulDescSetAttribute(desc, (int)CublasLtMatmulDescAttribute.TransB, &tb, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSB)");
            if (g.Epilogue != CublasLtEpilogue.Default)
            {
                uint ep = (uint)g.Epilogue;
                Check(CublasLtNative.cublasLtMatmulDescSetAttribute(desc, (int)CublasLtMatmulDescAttribute.Epilogue, &ep, sizeof(uint)), "cublasLtMatmulDescSetAttribute(EPILOGUE)");
            }
            if (g.AuxLd != 0)
            {
                long auxLd = g.AuxLd;
                Check(CublasLtNative.cublasLtMatmulDescSetAttribute(desc, (int)CublasLtMatmulDescAttribute.EpilogueAuxLd, &auxLd, sizeof(long)), "cublasLtMatmulDescSetAttribute(EPILOGUE_AUX_LD)");
            }
            int m = g.M, n = g.N, k = g.K;
            int aRows = g.TransA == CublasOperation.N ? m : k, aCols = g.TransA == CublasOperation.N ? k : m;
            int bRows = g.TransB == CublasOperation.N ? k : n, bCols = g.TransB == CublasOperation.N ? n : k;
            Check(CublasLtNative.cublasLtMatrixLayoutCreate(&la, (int)g.Type, (ulong)aRows, (ulong)aCols, g.Lda), "cublasLtMatrixLayoutCreate(A)");
            Check(CublasLtNative.cublasLtMatrixLayoutCreate(&lb, (int)g.Type, (ulong)bRows, (ulong)bCols, g.Ldb), "cublasLtMatrixLayoutCreate(B)");
            Check(CublasLtNative.cublasLtMatrixLayoutCreate(&ld, (int)g.Type, (ulong)m, (ulong)n, g.Ldd), "cublasLtMatrixLayoutCreate(D)");
            Check(CublasLtNative.cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
            ulong ws = (ulong)Workspace.Bytes;
            Check(CublasLtNative.cublasLtMatmulPreferenceSetAttribute(pref, (int)CublasLtPreferenceAttribute.MaxWorkspaceBytes, &ws, sizeof(ulong)), "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
            // Only algorithms that work at these pointers' alignment (an offset view or a batch slice need not be
            // 256-byte aligned, which the heuristic otherwise assumes).
            uint alA = g.AlignA, alB = g.AlignB, alD = g.AlignD;
            Check(CublasLtNative.cublasLtMatmulPreferenceSetAttribute(pref, (int)CublasLtPreferenceAttribute.MinAlignmentABytes, &alA, sizeof(uint)), "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_A_BYTES)");
            Check(CublasLtNative.cublasLtMatmulPreferenceSetAttribute(pref, (int)CublasLtPreferenceAttribute.MinAlignmentBBytes, &alB, sizeof(uint)), "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_B_BYTES)");
            Check(CublasLtNative.cublasLtMatmulPreferenceSetAttribute(pref, (int)CublasLtPreferenceAttribute.MinAlignmentCBytes, &alD, sizeof(uint)), "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_C_BYTES)");
            Check(CublasLtNative.cublasLtMatmulPreferenceSetAttribute(pref, (int)CublasLtPreferenceAttribute.MinAlignmentDBytes, &alD, sizeof(uint)), "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_D_BYTES)");

            // DGELU: the heuristic's first pick measured ~30% slower than the plain GEMM on the H100 (bf16, 2048×4096×4096),
            // so its candidates are timed on first use (TunedEpilogue); every other GEMM takes the first pick.
            const int MaxCandidates = 8;
            var results = stackalloc CublasLtHeuristicResult[MaxCandidates];
            int found = 0, requested = TunedEpilogue(g.Epilogue) ? MaxCandidates : 1;
            Check(CublasLtNative.cublasLtMatmulAlgoGetHeuristic(Handle, desc, la, lb, ld, ld, pref, requested, results, &found),
                "cublasLtMatmulAlgoGetHeuristic", $"m={m} n={n} k={k} {g.Type} {g.Compute}");
            if (found == 0)
                throw new CudaException("cublasLtMatmulAlgoGetHeuristic", 15, KnownName(15),
                    "no algorithm for this problem", $"m={m} n={n} k={k} {g.Type} {g.Compute} epilogue {g.Epilogue}");
            plan.Desc = desc; plan.A = la; plan.B = lb; plan.D = ld; plan.Algo = results[0].Algo;
            if (found > 1)
            {
                plan.Candidates = new CublasLtMatmulAlgo[found];
                for (int i = 0; i < found; i++) plan.Candidates[i] = results[i].Algo;
            }
            ok = true;
            return plan;
        }
        finally
        {
            if (pref != 0) CublasLtNative.cublasLtMatmulPreferenceDestroy(pref);
            if (!ok)
            {
                if (ld != 0) CublasLtNative.cublasLtMatrixLayoutDestroy(ld);
                if (lb != 0) CublasLtNative.cublasLtMatrixLayoutDestroy(lb);
                if (la != 0) CublasLtNative.cublasLtMatrixLayoutDestroy(la);
                if (desc != 0) CublasLtNative.cublasLtMatmulDescDestroy(desc);
            }
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
        lock (_gate)
        {
            foreach (var p in _plans.Values)
            {
                CublasLtNative.cublasLtMatrixLayoutDestroy(p.D); CublasLtNative.cublasLtMatrixLayoutDestroy(p.B);
                CublasLtNative.cublasLtMatrixLayoutDestroy(p.A); CublasLtNative.cublasLtMatmulDescDestroy(p.Desc);
            }
            _plans.Clear();
            foreach (var ws in _streamWorkspaces.Values) ws.Dispose();
            _streamWorkspaces.Clear();
        }
        Workspace.Dispose();
        Check(CublasLtNative.cublasLtDestroy(Handle), "cublasLtDestroy");
        Handle = IntPtr.Zero;
    }
}
