// CUDA C for the reductions and the index ops (gather, scatter_add) over any rank and strides. They are
// generated rather than hand-written so each dtype gets its own kernel, and kept apart from the backend so the
// source can be syntax-checked without a GPU (GeneratedSourceTests).

namespace Kiln.Cuda.Backend;

/// <summary>The reductions with a CUDA form: one thread per output element loops over the reduced elements in double.</summary>
internal enum CudaReduceKind { Sum, Mean, Max, Min, LogSumExp, Var, ArgMax }

internal static class CudaIndexCodegen
{
    /// <summary>
    /// A reduction kernel <c>name(out, n, meta, x, correction)</c>. meta: offset, outerRank, innerRank, outerShape,
    /// outerStrides, innerShape, innerStrides (the reduced axes are the inner ones). Order of additions: the reduced
    /// elements in row-major order, in double; max/min propagate NaN and argmax takes the first NaN or the first
    /// maximum (as the CPU kernels and PyTorch); var divides by count - correction.
    /// </summary>
    public static string Reduce(string name, CudaReduceKind kind, DType input, DType output)
    {
        string t = CudaCodegen.CType(input), ot = CudaCodegen.CType(output);
        string load = $"(double){CudaCodegen.Load(input, "x[offsetOf(j)]")}";
        string body = kind switch
        {
            CudaReduceKind.Sum or CudaReduceKind.Mean => $$"""
                double acc = 0.0;
                for (long long j = 0; j < count; ++j) acc += {{load}};
                """,
            CudaReduceKind.Max or CudaReduceKind.Min => $$"""
                double acc = {{(kind == CudaReduceKind.Max ? "-" : "")}}kiln_inf();
                for (long long j = 0; j < count; ++j) { double v = {{load}}; if (v != v || v {{(kind == CudaReduceKind.Max ? ">" : "<")}} acc) acc = v; if (acc != acc) break; }
                """,
            CudaReduceKind.ArgMax => $$"""
                long long best = 0; double bv = count > 0 ? (double){{CudaCodegen.Load(input, "x[offsetOf(0)]")}} : 0.0;
                for (long long j = 1; j < count && bv == bv; ++j) { double v = {{load}}; if (v != v || v > bv) { bv = v; best = j; } }
                double acc = (double)best;
                """,
            CudaReduceKind.LogSumExp => $$"""
                double m = -kiln_inf();
                for (long long j = 0; j < count; ++j) { double v = {{load}}; if (v != v || v > m) m = v; if (m != m) break; }
                double acc = m;
                if (m == m && m != kiln_inf() && m != -kiln_inf())
                {
                    double s = 0.0;
                    for (long long j = 0; j < count; ++j) s += exp({{load}} - m);
                    acc = m + log(s);
                }
                """,
            CudaReduceKind.Var => $$"""
                double mean = 0.0;
                for (long long j = 0; j < count; ++j) mean += {{load}};
                mean /= (double)count;
                double acc = 0.0;
                for (long long j = 0; j < count; ++j) { double d = {{load}} - mean; acc += d * d; }
                acc /= (double)(count - correction > 0 ? count - correction : 0);
                """,
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        string result = kind == CudaReduceKind.Mean ? "acc / (double)count" : "acc";
        return CudaCodegen.Prelude + $$"""
            __device__ __forceinline__ double kiln_inf() { return __longlong_as_double(0x7ff0000000000000LL); }
            extern "C" __global__ void {{name}}({{ot}}* out, long long n, const long long* meta, const {{t}}* x, long long correction)
            {
                long long off = meta[0]; int ro = (int)meta[1], ri = (int)meta[2];
                const long long* os = meta + 3; const long long* ost = os + ro; const long long* is = ost + ro; const long long* ist = is + ri;
                long long count = 1; for (int d = 0; d < ri; ++d) count *= is[d];
                for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
                {
                    long long base = off, rem = i;
                    for (int d = ro - 1; d >= 0; --d) { long long c = rem % os[d]; rem /= os[d]; base += c * ost[d]; }
                    auto offsetOf = [&](long long j) { long long o = base; for (int d = ri - 1; d >= 0; --d) { long long c = j % is[d]; j /= is[d]; o += c * ist[d]; } return o; };
            {{Indent(body, 8)}}
                    out[i] = {{CudaCodegen.Store(output, result)}};
                }
            }
            """;
    }

    /// <summary>
    /// Per-kind running state of a split reduction (3 doubles: sum | extreme | value, index | max, sum of exp |
    /// count, mean, M2) with its start, one element, the merge of two states and the final value. Merges are exact
    /// for max/min/argmax (NaN first, then the lowest index on ties) and follow Chan's formula for var (Welford).
    /// </summary>
    private static string StateOps(CudaReduceKind kind) => kind switch
    {
        CudaReduceKind.Sum or CudaReduceKind.Mean => """
            __device__ __forceinline__ kst st_init() { kst s; s.a = 0.0; s.b = 0.0; s.c = 0.0; return s; }
            __device__ __forceinline__ kst st_add(kst s, double v, long long j) { s.a += v; return s; }
            __device__ __forceinline__ kst st_merge(kst s, kst t) { s.a += t.a; return s; }
            """,
        CudaReduceKind.Max or CudaReduceKind.Min => $$"""
            __device__ __forceinline__ kst st_init() { kst s; s.a = {{(kind == CudaReduceKind.Max ? "-" : "")}}kiln_inf(); s.b = 0.0; s.c = 0.0; return s; }
            __device__ __forceinline__ kst st_add(kst s, double v, long long j) { if (s.a == s.a && (v != v || v {{(kind == CudaReduceKind.Max ? ">" : "<")}} s.a)) s.a = v; return s; }
            __device__ __forceinline__ kst st_merge(kst s, kst t) { return st_add(s, t.a, 0); }
            """,
        CudaReduceKind.ArgMax => """
            __device__ __forceinline__ kst st_init() { kst s; s.a = -kiln_inf(); s.b = -1.0; s.c = 0.0; return s; }
            __device__ __forceinline__ kst st_merge(kst s, kst t)
            {
                if (t.b < 0.0) return s;
                if (s.b < 0.0) return t;
                bool sn = s.a != s.a, tn = t.a != t.a;
                if (sn || tn) return (sn && (!tn || s.b < t.b)) ? s : t;
                if (s.a != t.a) return s.a > t.a ? s : t;
                return s.b < t.b ? s : t;
            }
            __device__ __forceinline__ kst st_add(kst s, double v, long long j) { kst t; t.a = v; t.b = (double)j; t.c = 0.0; return st_merge(s, t); }
            """,
        CudaReduceKind.LogSumExp => """
            __device__ __forceinline__ kst st_init() { kst s; s.a = -kiln_inf(); s.b = 0.0; s.c = 0.0; return s; }
            __device__ __forceinline__ kst st_merge(kst s, kst t)
            {
                if (s.a != s.a || t.a != t.a) { s.a = s.a + t.a; return s; }   // NaN
                double m = s.a > t.a ? s.a : t.a;
                if (m == -kiln_inf() || m == kiln_inf()) { s.a = m; s.b = m == kiln_inf() ? 1.0 : 0.0; return s; }
                s.b = (s.b == 0.0 ? 0.0 : s.b * exp(s.a - m)) + (t.b == 0.0 ? 0.0 : t.b * exp(t.a - m));
                s.a = m;
                return s;
            }
            __device__ __forceinline__ kst st_add(kst s, double v, long long j) { kst t; t.a = v; t.b = 1.0; t.c = 0.0; return st_merge(s, t); }
            """,
        CudaReduceKind.Var => """
            __device__ __forceinline__ kst st_init() { kst s; s.a = 0.0; s.b = 0.0; s.c = 0.0; return s; }
            __device__ __forceinline__ kst st_add(kst s, double v, long long j) { s.a += 1.0; double d = v - s.b; s.b += d / s.a; s.c += d * (v - s.b); return s; }
            __device__ __forceinline__ kst st_merge(kst s, kst t)
            {
                if (t.a == 0.0) return s;
                if (s.a == 0.0) return t;
                double n = s.a + t.a, d = t.b - s.b;
                s.c = s.c + t.c + d * d * s.a * t.a / n; s.b = s.b + d * t.a / n; s.a = n;
                return s;
            }
            """,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    private static string Finish(CudaReduceKind kind) => kind switch
    {
        CudaReduceKind.Mean => "s.a / (double)count",
        CudaReduceKind.ArgMax => "s.b < 0.0 ? 0.0 : s.b",
        CudaReduceKind.LogSumExp => "(s.a != s.a || s.a == kiln_inf() || s.a == -kiln_inf()) ? s.a : s.a + log(s.b)",
        CudaReduceKind.Var => "s.c / (double)(count - correction > 0 ? count - correction : 0)",
        _ => "s.a",
    };

    /// <summary>
    /// A reduction split across threads for long reductions: <c>name(part, n, parts, meta, x, rows)</c> writes one
    /// state per (output, part) to <c>part</c> ([n · parts] states), each part covering a contiguous range of the
    /// reduced elements. rows = 1: a block per (output, part), its threads striding over the range (the reduced
    /// axis is the contiguous one: coalesced reads), the block's states merged in a fixed tree; rows = 0: a thread
    /// per output (consecutive outputs are consecutive addresses) and blockIdx.y the part. meta as in <see cref="Reduce"/>.
    /// </summary>
    public static string ReducePartial(string name, CudaReduceKind kind, DType input) =>
        SplitPrelude(kind) + $$"""
        extern "C" __global__ void {{name}}(kst* part, long long n, long long parts, const long long* meta, const {{CudaCodegen.CType(input)}}* x, int rows)
        {
            long long off = meta[0]; int ro = (int)meta[1], ri = (int)meta[2];
            const long long* os = meta + 3; const long long* ost = os + ro; const long long* is = ost + ro; const long long* ist = is + ri;
            long long count = 1; for (int d = 0; d < ri; ++d) count *= is[d];
            long long chunk = (count + parts - 1) / parts;
            auto baseOf = [&](long long i) { long long b = off, rem = i; for (int d = ro - 1; d >= 0; --d) { long long c = rem % os[d]; rem /= os[d]; b += c * ost[d]; } return b; };
            auto offsetOf = [&](long long b, long long j) { long long o = b; for (int d = ri - 1; d >= 0; --d) { long long c = j % is[d]; j /= is[d]; o += c * ist[d]; } return o; };
            if (rows)
            {
                __shared__ kst sh[256];
                long long i = blockIdx.x / parts, p = blockIdx.x % parts;
                long long j0 = p * chunk, j1 = j0 + chunk < count ? j0 + chunk : count;
                long long b = baseOf(i);
                kst s = st_init();
                for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) s = st_add(s, (double){{CudaCodegen.Load(input, "x[offsetOf(b, j)]")}}, j);
                sh[threadIdx.x] = s;
                __syncthreads();
                for (int w = blockDim.x / 2; w > 0; w >>= 1)
                {
                    if (threadIdx.x < w) sh[threadIdx.x] = st_merge(sh[threadIdx.x], sh[threadIdx.x + w]);
                    __syncthreads();
                }
                if (threadIdx.x == 0) part[i * parts + p] = sh[0];
            }
            else
            {
                long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x, p = blockIdx.y;
                if (i >= n) return;
                long long j0 = p * chunk, j1 = j0 + chunk < count ? j0 + chunk : count;
                long long b = baseOf(i);
                kst s = st_init();
                for (long long j = j0; j < j1; ++j) s = st_add(s, (double){{CudaCodegen.Load(input, "x[offsetOf(b, j)]")}}, j);
                part[i * parts + p] = s;
            }
        }
        """;

    /// <summary><c>name(out, n, parts, part, count, correction)</c>: merges each output's part states in order and stores the result.</summary>
    public static string ReduceFinish(string name, CudaReduceKind kind, DType output) =>
        SplitPrelude(kind) + $$"""
        extern "C" __global__ void {{name}}({{CudaCodegen.CType(output)}}* out, long long n, long long parts, const kst* part, long long count, long long correction)
        {
            for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
            {
                kst s = part[i * parts];
                for (long long p = 1; p < parts; ++p) s = st_merge(s, part[i * parts + p]);
                out[i] = {{CudaCodegen.Store(output, Finish(kind))}};
            }
        }
        """;

    private static string SplitPrelude(CudaReduceKind kind) => CudaCodegen.Prelude + """
        __device__ __forceinline__ double kiln_inf() { return __longlong_as_double(0x7ff0000000000000LL); }
        struct kst { double a, b, c; };

        """ + StateOps(kind) + "\n";

    /// <summary>
    /// torch.gather <c>name(out, n, meta, x, idx, err)</c>: out[p] = x[p with p[axis] = idx[p]] for every position p of
    /// idx (out is dense in idx's shape). meta: rank, axis, axisSize, xOffset, idxOffset, idxShape, xStrides, idxStrides.
    /// An index outside [0, axisSize) reads nothing (0) and records itself in err (err[0] = 1, then the index, the axis size and <paramref name="opCode"/>: 0 gather, 1 scatter_add, 2 index_select, 3 index_add),
    /// which the backend reports at its next synchronisation.
    /// </summary>
    public static string Gather(string name, DType data, DType index, int opCode = 0) =>
        IndexPrelude + $$"""
        extern "C" __global__ void {{name}}({{CudaCodegen.CType(data)}}* out, long long n, const long long* meta, const {{CudaCodegen.CType(data)}}* x, const {{CudaCodegen.CType(index)}}* idx, long long* err)
        {
            int rank = (int)meta[0], axis = (int)meta[1]; long long size = meta[2];
            const long long* shape = meta + 5; const long long* xs = shape + rank; const long long* is = xs + rank;
            for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < n; p += (long long)gridDim.x * blockDim.x)
            {
                long long io = meta[4], xo = meta[3], rem = p, at = 0;
                for (int d = rank - 1; d >= 0; --d) { long long c = rem % shape[d]; rem /= shape[d]; io += c * is[d]; if (d != axis) xo += c * xs[d]; }
                at = (long long)idx[io];
                if (at < 0 || at >= size) { kiln_index_error(err, at, size, {{opCode}}); out[p] = 0; continue; }
                out[p] = x[xo + at * xs[axis]];
            }
        }
        """;

    /// <summary>
    /// torch.scatter_add's accumulation <c>name(out, n, meta, src, idx, err)</c>: out[p with p[axis] = idx[p]] += src[p]
    /// for every position p of idx (out is a dense copy of the base, made by the caller; atomicAdd, so repeated indices
    /// accumulate in an unspecified order). meta: rank, axis, axisSize, srcOffset, idxOffset, idxShape, outStrides,
    /// idxStrides, srcStrides. Out-of-range indices as in <see cref="Gather"/>.
    /// </summary>
    public static string ScatterAdd(string name, DType data, DType index, int opCode = 1)
    {
        string t = CudaCodegen.CType(data);
        // atomicAdd has no long long overload; two's complement addition is the same on the unsigned bits.
        string add = data == DType.Int64
            ? "atomicAdd((unsigned long long*)(out + oo), (unsigned long long)src[so]);"
            : "atomicAdd(out + oo, src[so]);";
        return IndexPrelude + $$"""
        extern "C" __global__ void {{name}}({{t}}* out, long long n, const long long* meta, const {{t}}* src, const {{CudaCodegen.CType(index)}}* idx, long long* err)
        {
            int rank = (int)meta[0], axis = (int)meta[1]; long long size = meta[2];
            const long long* shape = meta + 5; const long long* os = shape + rank; const long long* is = os + rank; const long long* ss = is + rank;
            for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < n; p += (long long)gridDim.x * blockDim.x)
            {
                long long io = meta[4], so = meta[3], oo = 0, rem = p, at = 0;
                for (int d = rank - 1; d >= 0; --d) { long long c = rem % shape[d]; rem /= shape[d]; io += c * is[d]; so += c * ss[d]; if (d != axis) oo += c * os[d]; }
                at = (long long)idx[io];
                if (at < 0 || at >= size) { kiln_index_error(err, at, size, {{opCode}}); continue; }
                oo += at * os[axis];
                {{add}}
            }
        }
        """;
    }

    /// <summary>Dtypes with an atomicAdd on sm_60 and later (what scatter_add accumulates with).</summary>
    public static bool ScatterAddSupports(DType t) => t is DType.Float32 or DType.Float64 or DType.Int32 or DType.Int64;

    private const string IndexPrelude = """
        __device__ __forceinline__ void kiln_index_error(long long* err, long long at, long long size, long long op)
        {
            // The first bad index wins; later ones only see the flag set.
            if (atomicCAS((unsigned long long*)err, 0ULL, 1ULL) == 0ULL) { err[1] = at; err[2] = size; err[3] = op; }
        }

        """;

    private static string Indent(string block, int spaces) =>
        string.Join("\n", block.Split('\n').Select(l => new string(' ', spaces) + l));
}
