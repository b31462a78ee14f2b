// CUDA C for the reductions and the index ops (gather, scatter_add) over any rank and strides. They are
// generated rather than hand-written so each dtype gets its own kernel, and kept apart from the backend so the
// source can be syntax-checked without a GPU (GeneratedSourceTests).

namespace Kiln.Cuda.Backend;

/// <summary>The reductions with a CUDA form (states in double, see CudaIndexCodegen.Reduce).</summary>
internal enum CudaReduceKind { Sum, Mean, Max, Min, LogSumExp, Var, ArgMax }

internal static class CudaIndexCodegen
{
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
            // One element; j grows along a thread's elements, so a tie keeps the state and the first NaN stays.
            __device__ __forceinline__ kst st_add(kst s, double v, long long j)
            {
                if (v <= s.a || s.a != s.a) return s;   // the common case: one comparison
                s.a = v; s.b = (double)j;               // above the maximum, or the first NaN
                return s;
            }
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
            // One element: one exp (the running sum rescaled only when the maximum grows).
            __device__ __forceinline__ kst st_add(kst s, double v, long long j)
            {
                if (s.a != s.a || v == -kiln_inf()) return s;
                if (v != v) { s.a = v; return s; }
                if (v <= s.a) { if (s.a != kiln_inf()) s.b += exp(v - s.a); return s; }
                if (v == kiln_inf()) { s.a = v; s.b = 1.0; return s; }
                s.b = (s.a == -kiln_inf() ? 0.0 : s.b * exp(s.a - v)) + 1.0;
                s.a = v;
                return s;
            }
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
    /// A reduction <c>name(out, part, n, parts, meta, x, rows, correction)</c>. meta: offset, outerRank, innerRank,
    /// outerShape, outerStrides, innerShape, innerStrides (the reduced axes are the inner ones; the host merges axes
    /// that are one run in memory, so the usual case has one inner axis and no index arithmetic per element). Each
    /// (output, part) reduces a contiguous range of the reduced elements into a state (<see cref="StateOps"/>):
    /// rows = 1, a block per (output, part), its threads striding over the range (the reduced axis is the
    /// contiguous one: coalesced reads), merged by warp shuffles then across warps in a fixed order; rows = 0, a
    /// thread per output (consecutive outputs are consecutive addresses) with blockIdx.y the part. With one part the
    /// state is finished and stored in out; with more it goes to part[output · parts + part] for
    /// <see cref="ReduceFinish"/>. Every merge order is fixed: the same input gives the same bits.
    /// </summary>
    public static string Reduce(string name, CudaReduceKind kind, DType input, DType output) =>
        SplitPrelude(kind) + $$"""
        extern "C" __global__ void {{name}}({{CudaCodegen.CType(output)}}* out, kst* part, long long n, long long parts, const long long* meta,
            const {{CudaCodegen.CType(input)}}* __restrict__ x, int rows, long long correction)
        {
            long long off = meta[0]; int ro = (int)meta[1], ri = (int)meta[2];
            const long long* os = meta + 3; const long long* ost = os + ro; const long long* is = ost + ro; const long long* ist = is + ri;
            long long count = 1; for (int d = 0; d < ri; ++d) count *= is[d];
            // Parts are whole multiples of 4 elements, so every part of a 16-byte aligned row starts aligned (16-byte loads);
            // trailing parts may be short or empty (an empty part is the identity state).
            long long chunk = ((count + parts - 1) / parts + 3) & ~3LL, step1 = ri == 1 ? ist[0] : 0;
            auto baseOf = [&](long long i) { long long b = off, rem = i; for (int d = ro - 1; d >= 0; --d) { long long c = rem % os[d]; rem /= os[d]; b += c * ost[d]; } return b; };
            auto offsetOf = [&](long long b, long long j)
            {
                if (ri == 1) return b + j * step1;
                long long o = b; for (int d = ri - 1; d >= 0; --d) { long long c = j % is[d]; j /= is[d]; o += c * ist[d]; } return o;
            };
            auto load = [&](long long b, long long j) { return (double){{CudaCodegen.Load(input, "x[offsetOf(b, j)]")}}; };
            auto store = [&](long long i, kst s) { if (parts == 1) out[i] = {{CudaCodegen.Store(output, Finish(kind))}}; else part[i * parts + (rows == 1 ? (long long)blockIdx.x % parts : (long long)blockIdx.y)] = s; };
            if (rows == 1)
            {
                __shared__ kst sh[32];
                long long i = blockIdx.x / parts, p = blockIdx.x % parts;
                long long j0 = p * chunk < count ? p * chunk : count, j1 = j0 + chunk < count ? j0 + chunk : count;
                long long b = baseOf(i), by = blockDim.x, j = j0 + threadIdx.x;
                kst s = st_init();
        {{(input == DType.Float32 ? Vector4Rows : "")}}
                for (; j + 3 * by < j1; j += 4 * by)   // four loads in flight
                {
                    double v0 = load(b, j), v1 = load(b, j + by), v2 = load(b, j + 2 * by), v3 = load(b, j + 3 * by);
                    s = st_add(s, v0, j); s = st_add(s, v1, j + by); s = st_add(s, v2, j + 2 * by); s = st_add(s, v3, j + 3 * by);
                }
                for (; j < j1; j += by) s = st_add(s, load(b, j), j);
                s = st_warp(s);
                int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
                if (lane == 0) sh[w] = s;
                __syncthreads();
                if (w == 0)
                {
                    s = st_warp(lane < nw ? sh[lane] : st_init());
                    if (lane == 0) store(i, s);
                }
            }
            else
            {
                long long p = blockIdx.y, j0 = p * chunk < count ? p * chunk : count, j1 = j0 + chunk < count ? j0 + chunk : count;
        {{(input == DType.Float32 ? Vector4Columns : "")}}
                for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
                {
                    long long b = baseOf(i), j = j0;
                    kst s = st_init();
                    for (; j + 3 < j1; j += 4)
                    {
                        double v0 = load(b, j), v1 = load(b, j + 1), v2 = load(b, j + 2), v3 = load(b, j + 3);
                        s = st_add(s, v0, j); s = st_add(s, v1, j + 1); s = st_add(s, v2, j + 2); s = st_add(s, v3, j + 3);
                    }
                    for (; j < j1; ++j) s = st_add(s, load(b, j), j);
                    store(i, s);
                }
            }
        }
        """;

    /// <summary>fp32 rows over a dense, 16-byte aligned range: 16-byte loads (four in flight), element indices still
    /// increasing along each thread; the scalar loop after it takes the tail (j is left at the first tail element).</summary>
    private const string Vector4Rows = """
                if (ri == 1 && step1 == 1 && (((unsigned long long)(x + b + j0)) & 15ULL) == 0)
                {
                    const kiln_f4* x4 = reinterpret_cast<const kiln_f4*>(x + b + j0);
                    long long quads = (j1 - j0) >> 2, q = threadIdx.x;
                    for (; q + 3 * by < quads; q += 4 * by)
                    {
                        kiln_f4 u[4] = { x4[q], x4[q + by], x4[q + 2 * by], x4[q + 3 * by] };
                        #pragma unroll
                        for (int k = 0; k < 4; k++)
                        {
                            long long ju = j0 + 4 * (q + k * by);
                            s = st_add(s, (double)u[k].x, ju); s = st_add(s, (double)u[k].y, ju + 1); s = st_add(s, (double)u[k].z, ju + 2); s = st_add(s, (double)u[k].w, ju + 3);
                        }
                    }
                    for (; q < quads; q += by)
                    {
                        kiln_f4 u = x4[q]; long long ju = j0 + 4 * q;
                        s = st_add(s, (double)u.x, ju); s = st_add(s, (double)u.y, ju + 1); s = st_add(s, (double)u.z, ju + 2); s = st_add(s, (double)u.w, ju + 3);
                    }
                    j = j0 + 4 * quads + threadIdx.x;
                }
        """;

    /// <summary>
    /// fp32 columns (a bias gradient's shape: one contiguous run of outputs, the reduced axis strided by a multiple of
    /// 4 elements, 16-byte aligned): a thread takes four neighbouring outputs with 16-byte loads (four rows in flight),
    /// four states; the host picks this form (rows = 2, <see cref="CudaBackend.ColumnLanes"/>) and launches a quarter of
    /// the threads. Each output still adds its elements in increasing order.
    /// </summary>
    private const string Vector4Columns = """
                if (rows == 2)
                {
                    const long long quads = n >> 2, w = step1 >> 2;
                    for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < quads; g += (long long)gridDim.x * blockDim.x)
                    {
                        const kiln_f4* x4 = reinterpret_cast<const kiln_f4*>(x + off) + g;
                        kst s0 = st_init(), s1 = st_init(), s2 = st_init(), s3 = st_init();
                        long long j = j0;
                        for (; j + 3 < j1; j += 4)
                        {
                            kiln_f4 u[4] = { x4[j * w], x4[(j + 1) * w], x4[(j + 2) * w], x4[(j + 3) * w] };
                            #pragma unroll
                            for (int k = 0; k < 4; k++)
                            {
                                s0 = st_add(s0, (double)u[k].x, j + k); s1 = st_add(s1, (double)u[k].y, j + k);
                                s2 = st_add(s2, (double)u[k].z, j + k); s3 = st_add(s3, (double)u[k].w, j + k);
                            }
                        }
                        for (; j < j1; ++j)
                        {
                            kiln_f4 u = x4[j * w];
                            s0 = st_add(s0, (double)u.x, j); s1 = st_add(s1, (double)u.y, j); s2 = st_add(s2, (double)u.z, j); s3 = st_add(s3, (double)u.w, j);
                        }
                        store(4 * g, s0); store(4 * g + 1, s1); store(4 * g + 2, s2); store(4 * g + 3, s3);
                    }
                    return;
                }
        """;

    /// <summary><c>name(out, n, parts, part, count, correction)</c>: a warp per output merges its part states (each lane a
    /// contiguous run of parts, then the lanes in a fixed tree) and stores the result.</summary>
    public static string ReduceFinish(string name, CudaReduceKind kind, DType output) =>
        SplitPrelude(kind) + $$"""
        extern "C" __global__ void {{name}}({{CudaCodegen.CType(output)}}* out, long long n, long long parts, const kst* part, long long count, long long correction)
        {
            int lane = threadIdx.x & 31;
            long long warps = ((long long)gridDim.x * blockDim.x) >> 5, per = (parts + 31) / 32;
            for (long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; i < n; i += warps)
            {
                kst s = st_init();
                long long p0 = lane * per, p1 = p0 + per < parts ? p0 + per : parts;
                for (long long p = p0; p < p1; ++p) s = st_merge(s, part[i * parts + p]);
                s = st_warp(s);
                if (lane == 0) out[i] = {{CudaCodegen.Store(output, Finish(kind))}};
            }
        }
        """;

    private static string SplitPrelude(CudaReduceKind kind) => CudaCodegen.Prelude + """
        __device__ __forceinline__ double kiln_inf() { return __longlong_as_double(0x7ff0000000000000LL); }
        struct kst { double a, b, c; };
        struct __align__(16) kiln_f4 { float x, y, z, w; };

        """ + StateOps(kind) + """

        // A warp's states merged into lane 0 in a fixed tree (lane l takes lane l + o while l + o < 32).
        __device__ __forceinline__ kst st_warp(kst s)
        {
            int lane = threadIdx.x & 31;
            for (int o = 16; o > 0; o >>= 1)
            {
                kst t;
                t.a = __shfl_down_sync(0xffffffffu, s.a, o); t.b = __shfl_down_sync(0xffffffffu, s.b, o); t.c = __shfl_down_sync(0xffffffffu, s.c, o);
                if (lane + o < 32) s = st_merge(s, t);
            }
            return s;
        }

        """;

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
        string add = data switch
        {
            DType.Int64 => "atomicAdd((unsigned long long*)(out + oo), (unsigned long long)src[so]);",
            DType.BFloat16 => "kiln_atomic_add16(out + oo, kiln_bf2f(src[so]), true);",
            DType.Float16 => "kiln_atomic_add16(out + oo, kiln_h2f(src[so]), false);",
            _ => "atomicAdd(out + oo, src[so]);",
        };
        return CudaCodegen.Prelude + IndexPrelude + Atomic16 + $$"""
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

    /// <summary>Dtypes scatter_add accumulates: those with an atomicAdd on sm_60 and later, and bf16/fp16 through a
    /// compare-and-swap on the 32-bit word holding the element (the sum in fp32, rounded once per add).</summary>
    public static bool ScatterAddSupports(DType t) => t is DType.Float32 or DType.Float64 or DType.Int32 or DType.Int64 or DType.BFloat16 or DType.Float16;

    private const string Atomic16 = """
        __device__ __forceinline__ void kiln_atomic_add16(unsigned short* a, float v, bool bf)
        {
            // The aligned word around the element (allocations are whole words, so it never leaves the buffer).
            unsigned int* w = (unsigned int*)((unsigned long long)a & ~3ULL);
            unsigned int shift = ((unsigned long long)a & 2ULL) ? 16u : 0u;
            unsigned int old = *w, assumed;
            do
            {
                assumed = old;
                unsigned short cur = (unsigned short)(assumed >> shift);
                float sum = (bf ? kiln_bf2f(cur) : kiln_h2f(cur)) + v;
                unsigned short next = bf ? kiln_f2bf(sum) : kiln_f2h(sum);
                old = atomicCAS(w, assumed, (assumed & ~(0xffffu << shift)) | ((unsigned int)next << shift));
            } while (old != assumed);
        }

        """;

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
