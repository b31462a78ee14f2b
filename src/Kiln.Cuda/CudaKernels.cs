// Launchers for Kiln's hand-written CUDA kernels (embedded Kernels/*.cu, compiled by NVRTC for the device's
// architecture and cached on disk). One instance per context; each module is compiled and loaded once, on
// first use. Every method only queues work on the given stream (nothing is synchronized).
// Pointers are CUdeviceptr values (DevicePtr converts from a DeviceBuffer or a ulong); tensors are contiguous,
// row-major, and "rows x cols" means the last axis is cols.
using System.Reflection;
using Kiln;

namespace Kiln.Cuda;

/// <summary>A device address; converts from a <see cref="DeviceBuffer"/> (its start) or a raw CUdeviceptr.</summary>
public readonly record struct DevicePtr(ulong Value)
{
    public static readonly DevicePtr Null = new(0);
    public static implicit operator DevicePtr(DeviceBuffer b) => new(b.Pointer);
    public static implicit operator DevicePtr(ulong p) => new(p);
    public static implicit operator KernelArg(DevicePtr p) => KernelArg.Pointer(p.Value);
    public DevicePtr Offset(long bytes) => new(Value + (ulong)bytes);
    public bool IsNull => Value == 0;
}

/// <summary>One parameter of a multi-tensor AdamW update: fp32 p, g, m, v of <paramref name="Numel"/> elements.</summary>
public readonly record struct AdamWTensor(DevicePtr P, DevicePtr G, DevicePtr M, DevicePtr V, long Numel);

/// <summary>The device-side descriptor table of one set of parameters (uploaded once; parameters keep stable
/// addresses across steps, so the same batch serves every step and a captured graph).</summary>
public sealed class AdamWBatch : IDisposable
{
    internal DeviceBuffer Buffer { get; }
    internal long TableOffset { get; }
    public int Tensors { get; }
    public int Blocks { get; }
    internal AdamWBatch(DeviceBuffer buffer, long tableOffset, int tensors, int blocks) { Buffer = buffer; TableOffset = tableOffset; Tensors = tensors; Blocks = blocks; }
    public void Dispose() => Buffer.Dispose();
}

public sealed class CudaKernels : IDisposable
{
    /// <summary>The modules (embedded Kernels/&lt;name&gt;.cu).</summary>
    public static readonly string[] ModuleNames = ["softmax", "norms", "cross_entropy", "rope", "embedding", "adamw", "attention"];

    /// <summary>Elements per block of the multi-tensor AdamW launch.</summary>
    public const int AdamWChunk = 8192;

    public CudaContext Context { get; }
    public NvrtcCompiler Compiler { get; }
    private readonly Lock _gate = new();
    private readonly Dictionary<string, CudaModule> _modules = new();
    private readonly Dictionary<string, CudaKernel> _kernels = new();

    /// <param name="compiler">null: a compiler with the default disk cache.</param>
    public CudaKernels(CudaContext context, NvrtcCompiler? compiler = null)
    {
        Context = context;
        Compiler = compiler ?? new NvrtcCompiler();
    }

    /// <summary>The full source NVRTC compiles for <paramref name="module"/>: common.cuh followed by the module.</summary>
    public static string Source(string module) => Resource("common.cuh") + "\n" + Resource(module + ".cu");

    private static string Resource(string file)
    {
        var asm = typeof(CudaKernels).Assembly;
        using var s = asm.GetManifestResourceStream("Kiln.Cuda.Kernels." + file)
            ?? throw new InvalidOperationException($"embedded kernel source '{file}' is missing from {asm.GetName().Name}");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>Compiles and loads every module now (otherwise each is compiled on first use).</summary>
    public void LoadAll() { foreach (var m in ModuleNames) Module(m); }

    private CudaModule Module(string name)
    {
        lock (_gate)
        {
            if (_modules.TryGetValue(name, out var m)) return m;
            var cubin = Compiler.Compile(Source(name), name + ".cu", Context.Device.Arch);
            m = CudaModule.Load(Context, cubin);
            _modules[name] = m;
            return m;
        }
    }

    internal CudaKernel Kernel(string module, string name)
    {
        lock (_gate)
        {
            var key = module + "/" + name;
            if (_kernels.TryGetValue(key, out var k)) return k;
            k = Module(module).GetKernel(name);
            _kernels[key] = k;
            return k;
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var m in _modules.Values) m.Dispose();
            _modules.Clear();
            _kernels.Clear();
        }
    }

    // ---- helpers ----

    private static string Suffix(DType t) => t switch
    {
        DType.Float32 => "f32",
        DType.BFloat16 => "bf16",
        DType.Float16 => "f16",
        _ => throw new NotSupportedException($"CUDA kernel: dtype {t} (float32, bfloat16 and float16 are supported)"),
    };

    private static string IndexSuffix(DType t) => t switch
    {
        DType.Int64 => "i64",
        DType.Int32 => "i32",
        _ => throw new NotSupportedException($"CUDA kernel: index dtype {t} (int64 and int32 are supported)"),
    };

    /// <summary>Threads for a one-block-per-row kernel: enough for one (vector) element each, 32..1024.</summary>
    /// <summary>
    /// The register-resident form of a row kernel (softmax, RMSNorm): 256 threads (fewer for short rows) each
    /// holding K groups of four, K the smallest of 1, 2, 4, 8 that covers the row; regs 0 (the two-read form)
    /// for unaligned or longer rows.
    /// </summary>
    private static (int Threads, int Regs) RegisterRows(int cols, bool vec)
    {
        int groups = (cols + 3) / 4, threads = Math.Clamp((groups + 31) / 32 * 32, 32, 256);
        if (vec) foreach (int k in (int[])[1, 2, 4, 8]) if (groups <= threads * k) return (threads, k);
        return (threads, 0);
    }

    private static int RowThreads(int cols, bool vec)
    {
        int work = vec ? (cols + 3) / 4 : cols;
        int t = Math.Clamp((work + 31) / 32 * 32, 32, 1024);
        return t;
    }

    /// <summary>Vector loads need cols % 4 == 0 and every row base aligned to 4 elements (16 B fp32, 8 B bf16).</summary>
    private static bool Vec(int cols, DType t, params ReadOnlySpan<DevicePtr> ptrs)
    {
        if (cols % 4 != 0) return false;
        ulong align = t == DType.Float32 ? 16u : 8u;
        foreach (var p in ptrs) if (p.Value % align != 0) return false;
        return true;
    }

    private int GridStride(long work, int threads = 256)
    {
        long blocks = (work + threads - 1) / threads;
        return (int)Math.Clamp(blocks, 1, (long)Context.Device.SmCount * 32);
    }

    private static void CheckRows(long rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if (rows > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(rows), rows, "at most 2^31-1 rows per launch");
    }

    private static void CheckFloat(DType t)
    {
        if (t != DType.Float32) throw new NotSupportedException($"CUDA kernel: dtype {t} (this kernel is float32 only)");
    }

    /// <summary>Sets n floats to <paramref name="value"/>.</summary>
    public void Fill(DevicePtr x, long n, float value, CudaStream stream)
    {
        if (n == 0) return;
        Kernel("attention", "fill_f32").Launch(GridStride(n), 256, 0, stream, x, n, value);
    }

    // ---- 1. softmax / log_softmax ----

    /// <summary>y = softmax(x) over the last axis of a rows x cols tensor (fp32 or bf16 storage; fp32 math).</summary>
    public void Softmax(DevicePtr x, DevicePtr y, long rows, int cols, DType dtype, CudaStream stream) => SoftmaxCore("softmax_", x, y, rows, cols, dtype, stream);

    /// <summary>y = log_softmax(x) over the last axis.</summary>
    public void LogSoftmax(DevicePtr x, DevicePtr y, long rows, int cols, DType dtype, CudaStream stream) => SoftmaxCore("log_softmax_", x, y, rows, cols, dtype, stream);

    private void SoftmaxCore(string name, DevicePtr x, DevicePtr y, long rows, int cols, DType dtype, CudaStream stream)
    {
        CheckRows(rows, cols);
        if (rows == 0 || cols == 0) return;
        bool vec = Vec(cols, dtype, x, y);
        var (threads, regs) = RegisterRows(cols, vec);
        Kernel("softmax", name + Suffix(dtype)).Launch((int)rows, regs > 0 ? threads : RowThreads(cols, vec), 0, stream, x, y, cols, vec ? 1 : 0, regs);
    }

    /// <summary>Softmax backward from the output y: dx = y ⊙ (g − Σ g⊙y) per row (fp32, bf16 or fp16 storage; fp32 math).</summary>
    public void SoftmaxBackward(DevicePtr y, DevicePtr g, DevicePtr dx, long rows, int cols, CudaStream stream, DType dtype = DType.Float32) =>
        SoftmaxBwdCore("softmax_bwd_", y, g, dx, rows, cols, dtype, stream);

    /// <summary>Log-softmax backward from the output y: dx = g − exp(y)·Σ g per row.</summary>
    public void LogSoftmaxBackward(DevicePtr y, DevicePtr g, DevicePtr dx, long rows, int cols, CudaStream stream, DType dtype = DType.Float32) =>
        SoftmaxBwdCore("log_softmax_bwd_", y, g, dx, rows, cols, dtype, stream);

    private void SoftmaxBwdCore(string name, DevicePtr y, DevicePtr g, DevicePtr dx, long rows, int cols, DType dtype, CudaStream stream)
    {
        CheckRows(rows, cols);
        if (rows == 0 || cols == 0) return;
        bool vec = Vec(cols, dtype, y, g, dx);
        Kernel("softmax", name + Suffix(dtype)).Launch((int)rows, RowThreads(cols, vec), 0, stream, y, g, dx, cols, vec ? 1 : 0);
    }

    // ---- 2. RMSNorm / LayerNorm ----

    /// <summary>y = x / √(mean(x²) + eps) · w over the last axis (w: cols elements of the same dtype).</summary>
    public void RmsNorm(DevicePtr x, DevicePtr w, DevicePtr y, long rows, int cols, float eps, DType dtype, CudaStream stream)
    {
        CheckRows(rows, cols);
        if (rows == 0 || cols == 0) return;
        bool vec = Vec(cols, dtype, x, w, y);
        var (threads, regs) = RegisterRows(cols, vec);
        Kernel("norms", "rmsnorm_" + Suffix(dtype)).Launch((int)rows, regs > 0 ? threads : RowThreads(cols, vec), 0, stream, x, w, y, cols, eps, vec ? 1 : 0, regs);
    }

    /// <summary>y = (x − mean) / √(var + eps) · w + b over the last axis (biased variance).</summary>
    public void LayerNorm(DevicePtr x, DevicePtr w, DevicePtr b, DevicePtr y, long rows, int cols, float eps, DType dtype, CudaStream stream)
    {
        CheckRows(rows, cols);
        if (rows == 0 || cols == 0) return;
        bool vec = Vec(cols, dtype, x, w, b, y);
        Kernel("norms", "layernorm_" + Suffix(dtype)).Launch((int)rows, RowThreads(cols, vec), 0, stream, x, w, b, y, cols, eps, vec ? 1 : 0);
    }

    private int NormBwdBlocks(long rows) => (int)Math.Clamp(rows, 1, (long)Context.Device.SmCount * 4);

    /// <summary>RMSNorm backward: dx (rows x cols) and dw (cols) from x, w and the upstream g, all of
    /// <paramref name="dtype"/> (fp32, bf16 or fp16; fp32 math). A stream-ordered fp32 workspace holds the
    /// per-block dw partials, then one kernel sums them.</summary>
    public void RmsNormBackward(DevicePtr x, DevicePtr w, DevicePtr g, DevicePtr dx, DevicePtr dw, long rows, int cols, float eps, CudaStream stream, DType dtype = DType.Float32)
    {
        CheckRows(rows, cols);
        string sfx = Suffix(dtype);
        if (cols == 0) return;
        int blocks = NormBwdBlocks(rows);
        using var part = DeviceBuffer.AllocateAsync(Context, (long)blocks * cols * 4, stream);
        if (rows == 0) Fill(part, (long)blocks * cols, 0f, stream);   // dw = 0, in dtype, through the same sum
        else Kernel("norms", "rmsnorm_bwd_" + sfx).Launch(blocks, RowThreads(cols, false), 0, stream, x, w, g, dx, part, rows, cols, eps);
        Kernel("norms", "reduce_partials_" + sfx).Launch((cols + 255) / 256, 256, 0, stream, part, blocks, cols, cols, dw, dw);
    }

    /// <summary>LayerNorm backward: dx, dw and db from x, w and the upstream g (dtype as RmsNormBackward).</summary>
    public void LayerNormBackward(DevicePtr x, DevicePtr w, DevicePtr g, DevicePtr dx, DevicePtr dw, DevicePtr db, long rows, int cols, float eps, CudaStream stream, DType dtype = DType.Float32)
    {
        CheckRows(rows, cols);
        string sfx = Suffix(dtype);
        if (cols == 0) return;
        int blocks = NormBwdBlocks(rows);
        using var part = DeviceBuffer.AllocateAsync(Context, (long)blocks * 2 * cols * 4, stream);
        if (rows == 0) Fill(part, (long)blocks * 2 * cols, 0f, stream);
        else Kernel("norms", "layernorm_bwd_" + sfx).Launch(blocks, RowThreads(cols, false), 0, stream, x, w, g, dx, part, rows, cols, eps);
        Kernel("norms", "reduce_partials_" + sfx).Launch((2 * cols + 255) / 256, 256, 0, stream, part, blocks, 2 * cols, cols, dw, db);
    }

    // ---- 3. cross-entropy ----

    /// <summary>Per-row cross-entropy of logits (rows x classes; fp32, bf16 or fp16 by <paramref name="dtype"/>) against
    /// int64/int32 targets, PyTorch semantics (ignore_index, label smoothing): rowLoss[r] (fp32; 0 on ignored rows,
    /// NaN for an out-of-range target); then mean[0] (dtype) = the mean over counted rows (NaN when all are
    /// ignored) when mean is not null.</summary>
    public void CrossEntropy(DevicePtr logits, DevicePtr targets, DType targetType, DevicePtr rowLoss, DevicePtr mean,
        long rows, int classes, long ignoreIndex, float labelSmoothing, CudaStream stream, DType dtype = DType.Float32)
    {
        CheckRows(rows, classes);
        string ts = Suffix(dtype) + "_" + IndexSuffix(targetType);
        if (rows > 0)
        {
            bool vec = Vec(classes, dtype, logits);
            Kernel("cross_entropy", "ce_fwd_" + ts).Launch((int)rows, RowThreads(classes, vec), 0, stream, logits, targets, rowLoss, classes, ignoreIndex, labelSmoothing, vec ? 1 : 0);
        }
        if (!mean.IsNull)
            Kernel("cross_entropy", "ce_mean_" + ts).Launch(1, 1024, 0, stream, rowLoss, targets, rows, ignoreIndex, mean, DevicePtr.Null);
    }

    /// <summary>Gradient of the mean cross-entropy w.r.t. the logits: dlogits = (softmax − q)·g/count on counted
    /// rows, 0 on ignored rows; <paramref name="upstream"/> is a device scalar of the logits' dtype (the loss gradient).</summary>
    public void CrossEntropyBackward(DevicePtr logits, DevicePtr targets, DType targetType, DevicePtr upstream, DevicePtr dlogits,
        long rows, int classes, long ignoreIndex, float labelSmoothing, CudaStream stream, DType dtype = DType.Float32)
    {
        CheckRows(rows, classes);
        if (rows == 0 || classes == 0) return;
        string ts = Suffix(dtype) + "_" + IndexSuffix(targetType);
        using var count = DeviceBuffer.AllocateAsync(Context, 4, stream);
        Kernel("cross_entropy", "ce_mean_" + ts).Launch(1, 1024, 0, stream, DevicePtr.Null, targets, rows, ignoreIndex, DevicePtr.Null, count);
        bool vec = Vec(classes, dtype, logits, dlogits);
        Kernel("cross_entropy", "ce_bwd_" + ts).Launch((int)rows, RowThreads(classes, vec), 0, stream, logits, targets, upstream, count, dlogits, classes, ignoreIndex, labelSmoothing, vec ? 1 : 0);
    }

    // ---- 4. RoPE ----

    /// <summary>Rotary embedding over the last axis (headDim, even) of a [..., seq, headDim] tensor of
    /// <paramref name="rows"/> rows; row r is at position r % seq + offset. inverse: the backward rotation.
    /// x == y (in place) is allowed. <paramref name="offsetOnDevice"/>, when given, is an int32/int64 device scalar
    /// (<paramref name="offsetType"/>) read by the kernel in place of <paramref name="offset"/>.</summary>
    public void Rope(DevicePtr x, DevicePtr y, long rows, int seq, int headDim, double theta, int offset, bool interleaved, bool inverse, DType dtype, CudaStream stream,
        DevicePtr offsetOnDevice = default, DType offsetType = DType.Int64)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        if (headDim % 2 != 0) throw new ArgumentException($"rope: head dim {headDim} must be even", nameof(headDim));
        if (rows == 0 || headDim == 0) return;
        ArgumentOutOfRangeException.ThrowIfLessThan(seq, 1);
        long pairs = rows * (headDim / 2);
        Kernel("rope", "rope_" + Suffix(dtype)).Launch(GridStride(pairs), 256, 0, stream, x, y, rows, seq, headDim, theta, offset, interleaved ? 1 : 0, inverse ? 1 : 0,
            offsetOnDevice, IndexSuffix(offsetType) == "i64" ? 1 : 0);
    }

    // ---- 5. embedding ----

    /// <summary>out[i, :] = table[ids[i], :] for n ids (int64/int32) into a vocab x dim table (fp32 or bf16);
    /// an out-of-range id gathers zeros and, when <paramref name="errors"/> is given, is recorded there
    /// ([flag, id, vocab, 2]; the first bad id wins).</summary>
    public void EmbeddingGather(DevicePtr table, DevicePtr ids, DType idType, DevicePtr output, long n, int dim, long vocab, DType dtype, CudaStream stream, DevicePtr errors = default)
    {
        if (n == 0 || dim == 0) return;
        string e = dtype switch { DType.Float32 => "f32", DType.BFloat16 => "b16", _ => Suffix(dtype) };
        Kernel("embedding", $"gather_{e}_{IndexSuffix(idType)}").Launch(GridStride(n * dim), 256, 0, stream, table, ids, output, n, dim, vocab, errors);
    }

    /// <summary>dtable[ids[i], :] += dout[i, :] (fp32, atomicAdd; dtable is not cleared first).</summary>
    public void EmbeddingScatterAdd(DevicePtr dout, DevicePtr ids, DType idType, DevicePtr dtable, long n, int dim, long vocab, CudaStream stream)
    {
        if (n == 0 || dim == 0) return;
        Kernel("embedding", "scatter_add_f32_" + IndexSuffix(idType)).Launch(GridStride(n * dim), 256, 0, stream, dout, ids, dtable, n, dim, vocab);
    }

    // ---- 6. multi-tensor AdamW ----

    /// <summary>Uploads the descriptor table for <paramref name="tensors"/> (synchronously; do it once, before the steps).</summary>
    public AdamWBatch CreateAdamWBatch(IReadOnlyList<AdamWTensor> tensors)
    {
        var desc = new ulong[tensors.Count * 5];
        var table = new List<int>();
        for (int t = 0; t < tensors.Count; t++)
        {
            var d = tensors[t];
            ArgumentOutOfRangeException.ThrowIfNegative(d.Numel);
            desc[5 * t] = d.P.Value; desc[5 * t + 1] = d.G.Value; desc[5 * t + 2] = d.M.Value; desc[5 * t + 3] = d.V.Value;
            desc[5 * t + 4] = (ulong)d.Numel;
            long chunks = (d.Numel + AdamWChunk - 1) / AdamWChunk;
            if (chunks > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(tensors), "tensor too large");
            for (int c = 0; c < chunks; c++) { table.Add(t); table.Add(c); }
        }
        long tableOffset = desc.Length * 8L;
        var buf = DeviceBuffer.Allocate(Context, Math.Max(16, tableOffset + table.Count * 4L));
        var bytes = new byte[buf.Bytes];
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(desc.AsSpan()).CopyTo(bytes);
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(table)).CopyTo(bytes.AsSpan((int)tableOffset));
        buf.CopyFrom<byte>(bytes);
        return new AdamWBatch(buf, tableOffset, tensors.Count, table.Count / 2);
    }

    /// <summary>One launch updating every tensor of the batch in place: p·decay − stepSize·m'/(√v'·denomScale + eps)
    /// with g scaled by gradScale first (Kiln.Cpu.OptimizerKernels.AdamW). <paramref name="deviceScalars"/>, when
    /// not null, points to 4 device floats {stepSize, denomScale, decay, gradScale} that replace the arguments.</summary>
    public void AdamW(AdamWBatch batch, float stepSize, float denomScale, float decay, float gradScale,
        float beta1, float beta2, float eps, CudaStream stream, DevicePtr deviceScalars = default)
    {
        if (batch.Blocks == 0) return;
        var d = new DevicePtr(batch.Buffer.Pointer);
        Kernel("adamw", "adamw_multi_f32").Launch(batch.Blocks, 256, 0, stream, d, d.Offset(batch.TableOffset), AdamWChunk,
            stepSize, denomScale, decay, gradScale, beta1, beta2, eps, deviceScalars);
    }

    // ---- 7. attention ----

    private static void CheckAttention(int batch, int hq, int hkv, int t, int s, int d)
    {
        if (d < 1 || d > 128) throw new NotSupportedException($"attention: head dim {d} (1..128 supported)");
        if (hkv < 1 || hq % hkv != 0) throw new ArgumentException($"attention: {hq} query heads are not a multiple of {hkv} kv heads");
        if ((long)batch * hq > 65535) throw new ArgumentOutOfRangeException(nameof(batch), "attention: batch x heads must be <= 65535");
        ArgumentOutOfRangeException.ThrowIfNegative(t);
        ArgumentOutOfRangeException.ThrowIfNegative(s);
    }

    /// <summary>Flash-style attention forward: o = softmax(scale·q·kᵀ [causal mask]) v with q, o [batch, hq, t, d],
    /// k, v [batch, hkv, s, d] of <paramref name="dtype"/> (fp32, bf16 or fp16; fp32 math); causal is bottom-right
    /// aligned (query i sees keys j ≤ i + s − t). lse ([batch, hq, t] fp32, may be null) receives the row
    /// log-sum-exp the backward needs. <paramref name="valid"/>, when given, is an int32/int64 device scalar: the
    /// keys in use (the rest of the s slots ignored; it replaces s in the causal alignment), read by the kernel; a
    /// count outside [t, s] writes nothing and is recorded in <paramref name="errors"/> ([flag, count, s, 4]).</summary>
    public void AttentionForward(DevicePtr q, DevicePtr k, DevicePtr v, DevicePtr o, DevicePtr lse,
        int batch, int hq, int hkv, int t, int s, int d, float scale, bool causal, CudaStream stream,
        DType dtype = DType.Float32, DevicePtr valid = default, DType validType = DType.Int64, DevicePtr errors = default)
    {
        CheckAttention(batch, hq, hkv, t, s, d);
        if (batch == 0 || hq == 0 || t == 0) return;
        Kernel("attention", "attn_fwd_" + Suffix(dtype)).Launch(new Dim3((uint)((t + 15) / 16), (uint)(batch * hq)), 128, 0, stream,
            q, k, v, o, lse, t, s, d, hq, hkv, scale, causal ? 1 : 0, valid, IndexSuffix(validType) == "i64" ? 1 : 0, errors);
    }

    /// <summary>Attention backward from q, k, v, the forward's o and lse and the upstream dO (all of
    /// <paramref name="dtype"/> but lse): writes dq, dk and dv in that dtype (accumulated in fp32: dk and dv with
    /// atomics, into an fp32 workspace rounded once for bf16/fp16). valid/errors as in AttentionForward.</summary>
    public void AttentionBackward(DevicePtr q, DevicePtr k, DevicePtr v, DevicePtr o, DevicePtr lse, DevicePtr dO,
        DevicePtr dq, DevicePtr dk, DevicePtr dv, int batch, int hq, int hkv, int t, int s, int d, float scale, bool causal, CudaStream stream,
        DType dtype = DType.Float32, DevicePtr valid = default, DType validType = DType.Int64, DevicePtr errors = default)
    {
        CheckAttention(batch, hq, hkv, t, s, d);
        string sfx = Suffix(dtype);
        long qN = (long)batch * hq * t * d, kvN = (long)batch * hkv * s * d;
        bool half = dtype != DType.Float32;
        using var wide = half ? DeviceBuffer.AllocateAsync(Context, Math.Max(1, qN + 2 * kvN) * 4, stream) : null;
        DevicePtr dq32 = half ? wide! : dq, dk32 = half ? new DevicePtr(wide!.Pointer).Offset(qN * 4) : dk, dv32 = half ? dk32.Offset(kvN * 4) : dv;
        Fill(dk32, kvN, 0f, stream);
        Fill(dv32, kvN, 0f, stream);
        if (half && qN > 0) Fill(dq32, qN, 0f, stream);   // rows the kernel skips (batch x heads with t = 0 have none)
        if (batch > 0 && hq > 0 && t > 0)
        {
            long rows = (long)batch * hq * t;
            using var delta = DeviceBuffer.AllocateAsync(Context, rows * 4, stream);
            Kernel("attention", "attn_bwd_delta_" + sfx).Launch((int)((rows * 32 + 255) / 256), 256, 0, stream, o, dO, delta, rows, d);
            Kernel("attention", "attn_bwd_" + sfx).Launch(new Dim3((uint)((t + 7) / 8), (uint)(batch * hq)), 128, 0, stream,
                q, k, v, dO, lse, delta, dq32, dk32, dv32, t, s, d, hq, hkv, scale, causal ? 1 : 0, valid, IndexSuffix(validType) == "i64" ? 1 : 0, errors);
        }
        if (!half) return;
        var round = Kernel("attention", "f32_to_" + sfx);
        if (qN > 0) round.Launch(GridStride(qN), 256, 0, stream, dq32, dq, qN);
        if (kvN > 0) { round.Launch(GridStride(kvN), 256, 0, stream, dk32, dk, kvN); round.Launch(GridStride(kvN), 256, 0, stream, dv32, dv, kvN); }
    }
}
