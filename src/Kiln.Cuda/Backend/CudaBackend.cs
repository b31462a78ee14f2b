// The engine's CUDA backend: runs plan nodes on one GPU. Views, elementwise ops and fused elementwise groups
// (CUDA C generated per program, see CudaCodegen), casts, reductions and index ops (CudaIndexCodegen/CudaIndexOps),
// matmul and its fused forms through cuBLASLt, and the hand-written kernels of CudaModelOps/CudaLayoutOps; float32, float64,
// bfloat16 and float16 (the 16-bit types stored as such, computed in fp32; ints and bools for casts, copies and
// comparisons). Eager work runs on the legacy default stream in order, so a download (which synchronizes) sees
// every earlier kernel; repeated plans are captured and replayed as CUDA Graphs (CudaGraphs.cs). Ops without a
// CUDA kernel fail with an error naming the op and the device.
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Cuda.Backend;

internal sealed partial class CudaBackend : IDeviceBackend
{
    private const int Threads = 256;
    private readonly CudaContext _context;
    private readonly Device _device;
    private readonly CudaAllocator _alloc;
    private readonly NvrtcCompiler _compiler = new();
    private readonly ConcurrentDictionary<string, Lazy<CudaKernel>> _kernels = new();
    private readonly ConcurrentDictionary<string, DeviceBuffer> _meta = new();
    private readonly Lazy<CublasLt> _blas;

    /// <summary>Kernels launched and NVRTC compilations done by this backend (tests count them).</summary>
    public long Launches;

    public CudaBackend(int index)
    {
        _context = CudaContext.Get(index);
        _device = Device.Cuda(index);
        _alloc = new CudaAllocator(_context, _device);
        _blas = new(() => new CublasLt(_context));
    }

    // ---------------- memory and transfers ----------------

    private Realised Allocate(DType dtype, int[] shape)
    {
        long n = Shapes.Numel(shape);
        var mem = _arena is { } arena ? arena.Rent(Math.Max(n, 1) * dtype.SizeInBytes()) : _alloc.Rent(Math.Max(n, 1) * dtype.SizeInBytes());
        return Realised.Contiguous(new Runtime.Buffer(dtype, mem, n), shape);
    }

    /// <summary>Frees the allocator's cache (after the GPU has finished the work queued so far).</summary>
    public void EmptyCache()
    {
        lock (_executeGate)
        {
            _context.Synchronize();
            _alloc.Trim();
        }
    }

    private static ulong Ptr(Realised r) => ((CudaMemory)r.Buffer.DeviceMemory!).Pointer;

    // Single-element uploads (the fill constants of `x * 0.5`, step scalars) by value: each distinct value is
    // copied to the GPU once and kept (pinned), so building a graph does not pay a synchronous copy per scalar.
    private readonly ConcurrentDictionary<(DType, long), Runtime.Buffer> _scalars = new();

    // Every entry point (Upload, Download, Execute, TryRun) holds _executeGate: one thread at a time drives the
    // GPU. Besides the launch path not being built for concurrent use, a capture in progress on one thread must
    // not see another thread's work: its kernels would join the capture (the stream field is shared) and a
    // legacy-stream copy would invalidate it (the graph stream is a blocking stream).
    public Realised Upload(Realised host)
    {
        lock (_executeGate) return UploadCore(host);
    }

    private Realised UploadCore(Realised host)
    {
        _context.MakeCurrent();
        var b = host.Buffer;
        long n = b.Length;
        if (n == 1 && b.DType.SizeInBytes() <= 8 && _scalars.Count < 4096)
        {
            var raw = new byte[8];
            MemoryMarshal.AsBytes(HostSpan(b))[..b.DType.SizeInBytes()].CopyTo(raw);
            var key = (b.DType, BitConverter.ToInt64(raw));
            var dev = _scalars.GetOrAdd(key, _ =>
            {
                var mem = CudaMemory.Pinned(_alloc, 8);
                mem.Buffer.CopyFrom<byte>(raw.AsSpan(0, b.DType.SizeInBytes()));
                return new Runtime.Buffer(b.DType, mem, 1);
            });
            return new Realised(dev, host.Offset, host.Shape, host.Strides);
        }
        var mem = _alloc.Rent(Math.Max(n, 1) * b.DType.SizeInBytes());
        var bytes = MemoryMarshal.AsBytes(HostSpan(b));
        mem.Buffer.CopyFrom<byte>(bytes[..(int)(n * b.DType.SizeInBytes())]);
        return new Realised(new Runtime.Buffer(b.DType, mem, n), host.Offset, host.Shape, host.Strides);
    }

    private static Span<byte> HostSpan(Runtime.Buffer b) => b.DType switch
    {
        DType.Float32 => MemoryMarshal.AsBytes(b.Span<float>()),
        DType.Float64 => MemoryMarshal.AsBytes(b.Span<double>()),
        DType.Int32 => MemoryMarshal.AsBytes(b.Span<int>()),
        DType.Int64 => MemoryMarshal.AsBytes(b.Span<long>()),
        DType.Bool => MemoryMarshal.AsBytes(b.Span<bool>()),
        DType.BFloat16 => MemoryMarshal.AsBytes(b.Span<BFloat16>()),
        DType.Float16 => MemoryMarshal.AsBytes(b.Span<Half>()),
        _ => throw new NotSupportedException($"dtype {b.DType}"),
    };

    public Realised Download(Realised device)
    {
        lock (_executeGate) return DownloadCore(device);
    }

    private Realised DownloadCore(Realised device)
    {
        _context.MakeCurrent();
        var dense = device.IsContiguous ? device : Copy(device);
        long n = dense.Numel;
        var host = Realised.Contiguous(BufferPool.Rent(dense.DType, n), dense.Shape);
        int size = dense.DType.SizeInBytes();
        var all = new byte[dense.Buffer.Length * size];
        ((CudaMemory)dense.Buffer.DeviceMemory!).Buffer.CopyTo<byte>(all);   // synchronous: earlier kernels are done
        try { ThrowPendingIndexError(); }
        catch { Evaluator.Release(host); if (!ReferenceEquals(dense, device)) Evaluator.Release(dense); throw; }
        all.AsSpan((int)(dense.Offset * size), (int)(n * size)).CopyTo(HostSpan(host.Buffer));
        if (!ReferenceEquals(dense, device)) Evaluator.Release(dense);
        return host;
    }

    // ---------------- dispatch ----------------

    /// <summary>KILN_CUDA_TRACE=1: print each op and synchronize after it (finds the kernel that faults or hangs).</summary>
    private static readonly bool Trace = Environment.GetEnvironmentVariable("KILN_CUDA_TRACE") == "1";

    private readonly Lock _executeGate = new();

    public Realised Execute(Node node, Realised[] x)
    {
        // One GPU stream: host threads gain nothing by dispatching at once, and the launch path (lazy NVRTC
        // compiles, metadata cache, cuBLASLt) is not built for it (concurrent dispatch hung on the H100).
        lock (_executeGate) return ExecuteTraced(node, x);
    }

    private Realised ExecuteTraced(Node node, Realised[] x)
    {
        if (!Trace) return ExecuteCore(node, x);
        Console.Error.WriteLine($"[kiln cuda] {node.Op.Name} {Shapes.Format(node.Shape)} <- {string.Join(" ", x.Select(i => Shapes.Format(i.Shape)))}");
        var r = ExecuteCore(node, x);
        if (_current is null) _context.Synchronize();
        Console.Error.WriteLine($"[kiln cuda]   done {node.Op.Name}");
        return r;
    }

    private Realised ExecuteCore(Node node, Realised[] x)
    {
        _context.MakeCurrent();
        var op = node.Op;
        if (op.Fusion == FusionClass.View) return View(node, x);
        if (ReferenceEquals(op, OpTable.FusedElementwise)) return Fused(node, x);
        if (ReferenceEquals(op, OpTable.Cast)) return Elementwise(node, x, [$"{CudaCodegen.Compute(node.DType)} t0 = ({CudaCodegen.Compute(node.DType)})x0;"], $"cast_{x[0].DType}_{node.DType}");
        if (ReferenceEquals(op, OpTable.MatMul)) return MatMul(node, x[0], x[1]);
        if (ReduceKindOf(op) is { } reduce) return Reduce(node, x[0], reduce);
        if (Model(node, x) is { } structured) return structured;
        if (Layout(node, x) is { } layout) return layout;
        if (Index(node, x) is { } indexed) return indexed;
        if (FusedMatMul(node, x) is { } fusedMatMul) return fusedMatMul;
        if (Comparison(op) is { } cmp && x.Length == 2 && x[0].DType == x[1].DType)   // NaN: false, but true for ne (as C# and PyTorch)
            return Elementwise(node, x, [$"bool t0 = (x0 {cmp} x1);"], $"{op.Name}_{x[0].DType}");
        if (ReferenceEquals(op, OpTable.Where) && x[0].DType == DType.Bool && x[1].DType == node.DType && x[2].DType == node.DType)
            return Elementwise(node, x, [$"{CudaCodegen.Compute(node.DType)} t0 = x0 ? x1 : x2;"], $"where_{node.DType}");
        if (CudaCodegen.Expression(op, "x0", x.Length > 1 ? "x1" : null, node.DType) is { } e
            && x.All(i => i.DType == node.DType) && node.DType is DType.Float32 or DType.Float64 or DType.BFloat16 or DType.Float16)
            return Elementwise(node, x, [$"{CudaCodegen.Compute(node.DType)} t0 = {e};"], $"{op.Name}_{node.DType}");
        throw new NotSupportedException($"{op.Name} on {_device}: no CUDA kernel yet (the CUDA backend covers views, elementwise ops, comparisons and where, fused elementwise groups, casts, sum/mean/max, matmul, norms, softmax, cross-entropy, rope, embedding, attention and the optimizer ops)");
    }

    private static string? Comparison(OpDef op) =>
        ReferenceEquals(op, OpTable.Eq) ? "==" : ReferenceEquals(op, OpTable.Ne) ? "!=" : ReferenceEquals(op, OpTable.Lt) ? "<"
        : ReferenceEquals(op, OpTable.Le) ? "<=" : ReferenceEquals(op, OpTable.Gt) ? ">" : ReferenceEquals(op, OpTable.Ge) ? ">=" : null;

    private Realised View(Node node, Realised[] x)
    {
        if (ReferenceEquals(node.Op, OpTable.Reshape) && !x[0].IsContiguous)
        {
            var dense = Copy(x[0]);   // a reshape that strides cannot express: copy on the device first
            var r = new Realised(dense.Buffer, dense.Offset, node.Shape, Shapes.ContiguousStrides(node.Shape));
            Evaluator.Release(dense);
            return r;
        }
        return node.Op.Cpu(x, node);   // pure stride arithmetic over the same buffer
    }

    // ---------------- elementwise ----------------

    private Realised Fused(Node node, Realised[] x)
    {
        var program = ((FusedProgram)node.Attrs!).Steps;
        var steps = CudaCodegen.Program(program, node.DType)
            ?? throw new NotSupportedException($"fused_elementwise on {_device}: an op of the group has no CUDA form");
        var key = "fused_" + node.DType + "_" + string.Join("|", program.Select(s => $"{s.Op.Name},{s.A},{s.B}"));
        return Elementwise(node, x, steps, key);
    }

    /// <summary>Copies a strided value into a dense one on the device.</summary>
    internal Realised Copy(Realised v, Realised? into = null)
    {
        if (v.IsContiguous && (into is null || into.IsContiguous) && _arena is null)
        {
            // A dense value is one async memcpy, except in a plan being captured (and its preparing run, which
            // compiles the kernel and uploads its metadata before the capture): a memcpy node cannot be re-pointed,
            // so its source would be staged and its result copied out on every replay (a KV cache twice per decode
            // step); the generated kernel's dense form (16-byte lanes) copies as fast.
            var o = into ?? Allocate(v.DType, v.Shape);
            CopyBytes(P(v), P(o), v.Numel * v.DType.SizeInBytes());
            return o;
        }
        return Run(v.Shape, v.DType, [v], [$"{CudaCodegen.Compute(v.DType)} t0 = x0;"], $"copy_{v.DType}", into);
    }

    private Realised Elementwise(Node node, Realised[] x, List<string> steps, string key) => Run(node.Shape, node.DType, x, steps, key);

    /// <param name="indexed">the steps read the flat output index <c>i</c> (no vector variant, which walks groups)</param>
    private Realised Run(int[] shape, DType outType, Realised[] x, List<string> steps, string key, Realised? into = null, bool indexed = false)
    {
        if (shape.Length > CudaCodegen.MaxRank)
        {
            // Axes that every operand walks as one run (and size-1 axes) merge; the dense output's flat order is unchanged.
            var (merged, views) = MergeAxes(shape, x);
            if (merged.Length > CudaCodegen.MaxRank)
            {
                foreach (var v in views) Evaluator.Release(v);
                throw new NotSupportedException($"CUDA backend: {Shapes.Format(shape)} has {merged.Length} axes that cannot be merged (the generated kernels take {CudaCodegen.MaxRank})");
            }
            var whole = into ?? Allocate(outType, shape);
            var flat = new Realised(whole.Buffer, whole.Offset, merged, Shapes.ContiguousStrides(merged));
            Run(merged, outType, views, steps, key, flat, indexed);
            Evaluator.Release(flat);
            foreach (var v in views) Evaluator.Release(v);
            return whole;
        }
        var inTypes = x.Select(i => i.DType).ToArray();
        bool[] scalar = x.Select(i => i.Numel == 1).ToArray();
        bool dense = x.All(i => i.Numel == 1 || (i.IsContiguous && Shapes.Equal(i.Shape, shape)));
        var o = into ?? Allocate(outType, shape);
        long n = o.Numel;
        if (n == 0) return o;
        // 16-byte vector accesses when every dense operand starts 16-byte aligned (a re-pointed graph keeps
        // each buffer's alignment, see CudaGraphs.Bind).
        int lanes = dense && !indexed ? CudaCodegen.VectorLanes(outType, inTypes, scalar) : 0;
        if (lanes > 0 && (n < lanes || !Aligned16(o) || !x.Select((v, k) => scalar[k] || Aligned16(v)).All(b => b))) lanes = 0;
        string fullKey = key + "/" + string.Join(",", inTypes) + "->" + outType + (dense ? "/dense:" + string.Concat(scalar.Select(b => b ? 's' : 'd')) + (lanes > 0 ? $"/v{lanes}" : "") : "");
        var kernel = Kernel(fullKey, name => CudaCodegen.Kernel(name, outType, inTypes, steps, dense ? scalar : null, lanes));
        var meta = Meta(shape, x);
        Span<KernelArg> args = stackalloc KernelArg[3 + x.Length];
        args[0] = KernelArg.Pointer(Ptr(o)); args[1] = n; args[2] = KernelArg.Pointer(meta.Pointer);
        for (int k = 0; k < x.Length; k++) args[3 + k] = KernelArg.Pointer(Ptr(x[k]));
        long work = lanes > 0 ? n / lanes : n;
        int blocks = (int)Math.Max(1, Math.Min((work + Threads - 1) / Threads, 65535L * 8));
        kernel.Launch(blocks, Threads, 0, _current, args);
        Interlocked.Increment(ref Launches);
        return o;
    }

    /// <summary>
    /// <paramref name="shape"/> with size-1 axes dropped and neighbours merged where every operand's strides (aligned
    /// to the output, 0 where broadcast) make them one run; views of the operands in the merged shape.
    /// </summary>
    internal static (int[] Shape, Realised[] Views) MergeAxes(int[] shape, Realised[] x)
    {
        int rank = shape.Length;
        var strides = x.Select(v => Enumerable.Range(0, rank).Select(d =>
        {
            int lead = rank - v.Shape.Length;
            return d < lead || v.Shape[d - lead] == 1 ? 0L : v.Strides[d - lead];
        }).ToArray()).ToArray();
        var dims = new List<long>();
        var runs = x.Select(_ => new List<long>()).ToArray();
        for (int d = 0; d < rank; d++)
        {
            if (shape[d] == 1) continue;
            int last = dims.Count - 1;
            bool oneRun = last >= 0;
            for (int k = 0; k < x.Length && oneRun; k++) oneRun = runs[k][last] == strides[k][d] * shape[d];
            if (oneRun)
            {
                dims[last] *= shape[d];
                for (int k = 0; k < x.Length; k++) runs[k][last] = strides[k][d];
                continue;
            }
            dims.Add(shape[d]);
            for (int k = 0; k < x.Length; k++) runs[k].Add(strides[k][d]);
        }
        int[] merged = dims.Count == 0 ? [1] : dims.Select(n => checked((int)n)).ToArray();
        var views = x.Select((v, k) => new Realised(v.Buffer, v.Offset, merged, dims.Count == 0 ? [0L] : runs[k].ToArray())).ToArray();
        return (merged, views);
    }

    private static bool Aligned16(Realised v) => (Ptr(v) + (ulong)(v.Offset * v.DType.SizeInBytes())) % 16 == 0;

    /// <summary>[rank, shape, per input: offset, strides aligned to the output (0 where broadcast)], cached per content.</summary>
    private DeviceBuffer Meta(int[] shape, Realised[] x)
    {
        int rank = shape.Length;
        var m = new long[1 + rank + x.Length * (rank + 1)];
        m[0] = rank;
        for (int d = 0; d < rank; d++) m[1 + d] = shape[d];
        for (int k = 0; k < x.Length; k++)
        {
            int at = 1 + rank + k * (rank + 1), lead = rank - x[k].Shape.Length;
            m[at] = x[k].Offset;
            for (int d = 0; d < rank; d++)
                m[at + 1 + d] = d < lead || x[k].Shape[d - lead] == 1 ? 0 : x[k].Strides[d - lead];
        }
        return MetaBuffer(string.Join(",", m), m);
    }

    /// <summary>A kernel's metadata array on the device, uploaded once per distinct content (keyed by <paramref name="key"/>).</summary>
    private DeviceBuffer MetaBuffer(string key, long[] values) => _meta.GetOrAdd(key, _ =>
    {
        var b = DeviceBuffer.Allocate<long>(_context, Math.Max(values.Length, 1));
        b.CopyFrom<long>(values);
        return b;
    });

    private CudaKernel Kernel(string key, Func<string, string> source) =>
        _kernels.GetOrAdd(key, k => new Lazy<CudaKernel>(() =>
        {
            string name = "k" + (uint)k.GetHashCode();
            var image = _compiler.Compile(source(name), name + ".cu", _context.Device.Arch);
            return CudaModule.Load(_context, image).GetKernel(name);
        })).Value;

    // ---------------- reductions ----------------

    private static CudaReduceKind? ReduceKindOf(OpDef op) =>
        ReferenceEquals(op, OpTable.Sum) ? CudaReduceKind.Sum : ReferenceEquals(op, OpTable.Mean) ? CudaReduceKind.Mean
        : ReferenceEquals(op, OpTable.Max) ? CudaReduceKind.Max : ReferenceEquals(op, OpTable.Min) ? CudaReduceKind.Min
        : ReferenceEquals(op, OpTable.LogSumExp) ? CudaReduceKind.LogSumExp : ReferenceEquals(op, OpTable.Var) ? CudaReduceKind.Var
        : ReferenceEquals(op, OpTable.ArgMax) ? CudaReduceKind.ArgMax : null;

    /// <summary>
    /// How to split a reduction of <paramref name="count"/> elements into each of <paramref name="n"/> outputs, or
    /// (0, _) for one thread per output (short reductions, or strided ones with outputs enough to fill the GPU).
    /// Rows: a block per (output, part) when the reduced axis is the contiguous one; else a thread per output and
    /// parts along the grid's y (consecutive outputs read consecutive addresses).
    /// </summary>
    /// <summary>KILN_DISABLE=cudasplit: every reduction one thread per output (what the split is measured against).</summary>
    private static readonly bool SplitReductions = !Settings.IsDisabled("cudasplit");

    /// <summary>
    /// How a reduction of <paramref name="count"/> elements into each of <paramref name="n"/> outputs is spread:
    /// short ones (&lt; 256) a thread per output; longer ones over the contiguous axis (rows) a block per (output,
    /// part), ~4096 elements per part, up to 1024 parts; strided ones a thread per output, the reduced range split
    /// along the grid's y until ~256K threads run (≥ 64 elements per part). Parts 1: the kernel stores the result
    /// itself (one launch).
    /// </summary>
    /// <summary>
    /// Threads of a block that reduces one contiguous range (rows mode): ~32 elements per thread, 64 to 256 threads —
    /// a 4096-wide row gets 128 (eight 16-byte loads each, four in flight) rather than 256 with two loads each.
    /// </summary>
    internal static int RowBlock(long count, long parts)
    {
        long chunk = (count + parts - 1) / parts;
        return chunk >= 8192 ? 256 : chunk >= 4096 ? 128 : 64;
    }

    /// <summary>
    /// Whether a strided (columns) reduction takes the fp32 four-outputs-per-thread form: the outputs one contiguous
    /// run (a multiple of 4), the one reduced axis strided by a multiple of 4 elements, the data 16-byte aligned.
    /// </summary>
    internal static bool ColumnLanes(Realised x, int[] outer, long[] outerStrides, int[] inner, long[] innerStrides) =>
        x.DType == DType.Float32 && outer.Length == 1 && outerStrides[0] == 1 && outer[0] % 4 == 0
        && inner.Length == 1 && innerStrides[0] % 4 == 0 && Aligned16(x);

    internal static (long Parts, bool Rows) SplitReduction(long n, long count, bool innerContiguous)
    {
        if (!SplitReductions || count < 256) return (1, false);
        var split = innerContiguous ? (Math.Clamp((count + 4095) / 4096, 1, 1024), true)
            : (Math.Clamp(Math.Min((count + 63) / 64, (262144 + n - 1) / n), 1, 65535), false);
        return split.Item1 > 1 && n * split.Item1 * 3 > int.MaxValue ? (1, split.Item2) : split;   // the states' scratch stays one int-sized buffer
    }

    private Realised Reduce(Node node, Realised x, CudaReduceKind kind)
    {
        var (axes, correction) = node.Attrs switch
        {
            VarAttrs v => (v.Axes, v.Correction),
            AxesAttrs a => (a.Axes, 0),
            _ => throw new InvalidOperationException($"{node.Op.Name}: unexpected attributes {node.Attrs}"),
        };
        // Floats, and int32 where the result is one of its elements (a double holds every int32 exactly).
        bool typed = x.DType is DType.Float32 or DType.Float64 or DType.BFloat16 or DType.Float16
            || (x.DType == DType.Int32 && kind is CudaReduceKind.Max or CudaReduceKind.Min or CudaReduceKind.ArgMax);
        if (!typed) throw new NotSupportedException($"{node.Op.Name} on {_device}: dtype {x.DType.ShortName()}");
        // Kept axes (the outputs, row-major) and reduced axes (row-major: argmax's index), each with runs merged.
        var keep = Enumerable.Range(0, x.Shape.Length).Where(d => !axes.Contains(d)).ToArray();
        var (outer, outerStrides) = MergeRuns(keep.Select(d => x.Shape[d]).ToArray(), keep.Select(d => x.Strides[d]).ToArray());
        var (inner, innerStrides) = MergeRuns(axes.Select(d => x.Shape[d]).ToArray(), axes.Select(d => x.Strides[d]).ToArray());
        var o = Allocate(node.DType, node.Shape);
        long n = Shapes.Numel(outer), count = Shapes.Numel(inner);
        if (n == 0) return o;
        var m = new List<long> { x.Offset, outer.Length, inner.Length };
        m.AddRange(outer.Select(v => (long)v)); m.AddRange(outerStrides);
        m.AddRange(inner.Select(v => (long)v)); m.AddRange(innerStrides);
        var meta = MetaBuffer("r:" + string.Join(",", m), [.. m]);
        var (parts, rows) = SplitReduction(n, count, inner.Length > 0 && innerStrides[^1] == 1);
        var part = parts > 1 ? Allocate(DType.Float64, [(int)(n * parts * 3)]) : null;
        var kernel = Kernel($"reduce_{kind}_{x.DType}_{node.DType}", name => CudaIndexCodegen.Reduce(name, kind, x.DType, node.DType));
        bool lanes4 = !rows && ColumnLanes(x, outer, outerStrides, inner, innerStrides);
        long threads = lanes4 ? n / 4 : n;
        Dim3 grid = rows ? new Dim3(checked((uint)(n * parts))) : new Dim3((uint)Math.Min((threads + Threads - 1) / Threads, 65535L * 8), (uint)parts);
        kernel.Launch(grid, rows ? RowBlock(count, parts) : Threads, 0, _current, KernelArg.Pointer(Ptr(o)), KernelArg.Pointer(part is null ? 0 : Ptr(part)), n, parts,
            KernelArg.Pointer(meta.Pointer), KernelArg.Pointer(Ptr(x)), rows ? 1 : lanes4 ? 2 : 0, (long)correction);
        Interlocked.Increment(ref Launches);
        if (part is null) return o;
        var finish = Kernel($"reduce_finish_{kind}_{node.DType}", name => CudaIndexCodegen.ReduceFinish(name, kind, node.DType));
        finish.Launch((int)Math.Min((n * 32 + Threads - 1) / Threads, 65535L * 8), Threads, 0, _current,
            KernelArg.Pointer(Ptr(o)), n, parts, KernelArg.Pointer(Ptr(part)), count, (long)correction);
        Interlocked.Increment(ref Launches);
        Evaluator.Release(part);
        return o;
    }

    /// <summary>Axes (row-major order kept) without size-1 ones, neighbours that are one run in memory merged
    /// (stride[d] = stride[d+1]·shape[d+1]): the kernels then walk one axis where a dense tensor has several.</summary>
    internal static (int[] Shape, long[] Strides) MergeRuns(int[] shape, long[] strides)
    {
        var s = new List<int>(); var st = new List<long>();
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 1) continue;
            if (s.Count > 0 && st[^1] == strides[d] * shape[d]) { s[^1] *= shape[d]; st[^1] = strides[d]; }
            else { s.Add(shape[d]); st.Add(strides[d]); }
        }
        return ([.. s], [.. st]);
    }

    // ---------------- matmul ----------------

    /// <summary>The optimizer's matmul-based fused ops: a GEMM (cuBLASLt) then one generated elementwise kernel.</summary>
    private Realised? FusedMatMul(Node node, Realised[] x)
    {
        var op = node.Op;
        string t = CudaCodegen.Compute(node.DType);
        if (ReferenceEquals(op, OpTable.MatMulEpilogue))
        {
            string? act = ((EpilogueAttrs)node.Attrs!).Activation;
            // Bias and ReLU / tanh-GELU in cuBLASLt's own epilogue: no second pass over the product.
            if (EpilogueOf(x.Length > 2, act) is { } epilogue)
            {
                var o = Allocate(node.DType, node.Shape);
                if (GemmInto(o, x[0], x[1], 1f, 0f, x.Length > 2 ? x[2] : null, epilogue)) return o;
                Evaluator.Release(o);
            }
            var y = MatMul(node, x[0], x[1]);
            if (x.Length == 2 && act is null) return y;
            var steps = new List<string> { x.Length > 2 ? $"{t} t0 = x0 + x1;" : $"{t} t0 = x0;" };
            if (act is not null)
            {
                var actOp = Kiln.Passes.EpilogueFusion.Activations.First(o => o.Name == act);
                steps.Add($"{t} t1 = {CudaCodegen.Expression(actOp, "t0", null, node.DType)};");
            }
            var r = Run(node.Shape, node.DType, x.Length > 2 ? [y, x[2]] : [y], steps, $"epilogue_{act}_{x.Length}_{node.DType}");
            Evaluator.Release(y);
            return r;
        }
        if (ReferenceEquals(op, OpTable.MatMulProgram))
        {
            // Made on CUDA only as product · gelu_tanh_grad(p) (Passes/MatMulProgramFusion): cuBLASLt's DGELU epilogue,
            // p its auxiliary matrix (laid out as the product: dense, leading dimension a multiple of 8, 16-byte aligned).
            var pa = (MatMulProgramAttrs)node.Attrs!;
            if (pa.MatMulInputs != 2 || Kiln.Passes.MatMulProgramFusion.DGeluAux(pa.Program, pa.Slot, x.Length - 1) is null)
                throw new NotSupportedException($"matmul_program on {_device}: only a product times gelu_tanh_grad (the program was [{pa.Program}])");
            var aux = x[2];
            if (aux.IsContiguous && Aligned16(aux) && node.Shape[^1] % 8 == 0 && !_noDGelu.Contains(node.DType))
            {
                var o = Allocate(node.DType, node.Shape);
                // The heuristic finding no algorithm fails before anything is launched: the two-step form below, from now on.
                try { if (GemmInto(o, x[0], x[1], 1f, 0f, epilogue: CublasLtEpilogue.DGelu, aux: aux)) { Interlocked.Increment(ref DGeluGemms); return o; } }
                catch (CudaException e) when (e.Call == "cublasLtMatmulAlgoGetHeuristic") { _noDGelu.Add(node.DType); }
                Evaluator.Release(o);
            }
            var y = MatMul(node, x[0], x[1]);
            Realised[] ins = pa.Slot == 0 ? [y, aux] : [aux, y];
            var steps = CudaCodegen.Program(pa.Program.Steps, node.DType)!;
            return Run(node.Shape, node.DType, ins, steps, "dgelu_" + node.DType + "_" + pa.Slot, into: y);   // in place over the product
        }
        if (ReferenceEquals(op, OpTable.SwiGlu))
        {
            var gate = MatMul(node, x[0], x[1]); var up = MatMul(node, x[0], x[2]);
            var r = Run(node.Shape, node.DType, [gate, up], [$"{t} t0 = {CudaCodegen.Expression(OpTable.Silu, "x0", null, node.DType)} * x1;"], $"swiglu_{node.DType}");
            Evaluator.Release(gate); Evaluator.Release(up);
            return r;
        }
        if (ReferenceEquals(op, OpTable.LoraLinear))
        {
            // y = x·W + s·(h·A)·B (+ bias), h = x or dropout of x
            var la = (LoraAttrs)node.Attrs!;
            double scale = la.Scale;
            Realised? bias = la.HasBias ? x[la.BiasIndex] : null;
            int[] xaShape = [.. node.Shape[..^1], x[2].Shape[1]];
            var xa = MatMulTo(xaShape, x[la.BranchIndex], x[2]);
            // s·(x·A)·B first (the scale is its alpha), then x·W accumulated onto it (beta 1, bias in the epilogue):
            // no elementwise pass, and the big GEMM, compute-bound, reads the low-rank term in its epilogue
            // instead of a memory-bound pass re-reading and re-writing y after it.
            var y = Allocate(node.DType, node.Shape);
            if (GemmInto(y, xa, x[3], (float)scale, 0f) && GemmInto(y, x[0], x[1], 1f, 1f, bias)) { Evaluator.Release(xa); return y; }
            Evaluator.Release(y);
            var baseY = MatMul(node, x[0], x[1]);
            var lora = MatMul(node, xa, x[3]);
            var ins = bias is not null ? new[] { baseY, lora, bias } : new[] { baseY, lora };
            string sc = CudaCodegen.Literal(scale, node.DType);
            var r = Run(node.Shape, node.DType, ins, [$"{t} t0 = x0 + ({t})({sc}) * x1{(bias is not null ? " + x2" : "")};"], $"lora_{ins.Length}_{node.DType}_{scale:R}");
            Evaluator.Release(baseY); Evaluator.Release(xa); Evaluator.Release(lora);
            return r;
        }
        return null;
    }

    /// <summary>GEMMs run with cuBLASLt's DGELU epilogue (a tanh-GELU backward in the GEMM).</summary>
    public long DGeluGemms;
    private readonly HashSet<DType> _noDGelu = [];   // dtypes cuBLASLt had no DGELU algorithm for (Execute is serialised)

    private Realised MatMul(Node node, Realised a, Realised b) => MatMulTo(node.Shape, a, b);

    private Realised MatMulTo(int[] outShape, Realised a, Realised b)
    {
        if (a.DType is not (DType.Float32 or DType.Float64 or DType.BFloat16 or DType.Float16) || a.DType != b.DType)
            throw new NotSupportedException($"matmul on {_device}: dtype {a.DType.ShortName()} x {b.DType.ShortName()}");
        if (a.Shape.Length < 2 || b.Shape.Length < 2) throw new NotSupportedException($"matmul on {_device}: vector operands are not supported yet (shapes {Shapes.Format(a.Shape)} x {Shapes.Format(b.Shape)})");
        int m = a.Shape[^2], k = a.Shape[^1], n = b.Shape[^1];
        int batchRank = outShape.Length - 2;
        long batches = Shapes.Numel(outShape.AsSpan(0, batchRank));
        var o = Allocate(a.DType, outShape);
        int size = a.DType.SizeInBytes();
        if (GemmInto(o, a, b, 1f, 0f)) return o;
        // Dense operands broadcast to the output's batch shape (a copy kernel makes them contiguous).
        var adb = Dense(a, [.. outShape[..batchRank], m, k]);
        var bdb = Dense(b, [.. outShape[..batchRank], k, n]);
        if (GemmType(a.DType) is { } type)
        {
            Foreign(Ptr(adb)); Foreign(Ptr(bdb)); Foreign(Ptr(o));
            for (long i = 0; i < batches; i++)
                _blas.Value.MatmulRowMajor(m, n, k, type, Ptr(adb) + (ulong)((adb.Offset + i * m * k) * size), Ptr(bdb) + (ulong)((bdb.Offset + i * k * n) * size),
                    Ptr(o) + (ulong)(i * m * n * size), stream: _current, compute: ComputeFor(type));
            Interlocked.Add(ref Launches, batches);
        }
        else NaiveMatMul(adb, bdb, o, batches, m, n, k);   // fp64 is for checking, not speed (the cuBLASLt wrapper scales in fp32)
        if (!ReferenceEquals(adb, a)) Evaluator.Release(adb);
        if (!ReferenceEquals(bdb, b)) Evaluator.Release(bdb);
        return o;
    }

    /// <summary>
    /// o = alpha·(a·b) + beta·o as one cuBLASLt GEMM when b is one matrix for every batch (x·W with x [..., m, k]):
    /// the batch folds into the rows, and transposed views (x·Wᵀ, how Linear stores HF weights; xᵀ·g in a weight
    /// gradient) are read as is. False (nothing done) for other layouts or dtypes.
    /// </summary>
    /// <summary>The cuBLASLt epilogue for a bias and an activation, or null when it has none (GELU with erf, SiLU: a
    /// generated kernel applies those after the GEMM).</summary>
    internal static CublasLtEpilogue? EpilogueOf(bool bias, string? activation) => activation switch
    {
        null => bias ? CublasLtEpilogue.Bias : CublasLtEpilogue.Default,
        "relu" => bias ? CublasLtEpilogue.ReluBias : CublasLtEpilogue.Relu,
        "gelu_tanh" => bias ? CublasLtEpilogue.GeluBias : CublasLtEpilogue.Gelu,
        _ => null,
    };

    private bool GemmInto(Realised o, Realised a, Realised b, float alpha, float beta, Realised? bias = null, CublasLtEpilogue? epilogue = null, Realised? aux = null)
    {
        if (GemmType(a.DType) is not { } type || SharedMatrix(b) is not { } b2) return false;
        // A bias (one value per output column, dense) rides the GEMM's epilogue.
        if (bias is not null && !(bias.Shape.Length == 1 && bias.Shape[0] == b.Shape[^1] && bias.IsContiguous && bias.DType == a.DType)) return false;
        int m = a.Shape[^2], k = a.Shape[^1], n = b.Shape[^1], size = a.DType.SizeInBytes();
        int batchRank = o.Shape.Length - 2;
        long batches = Shapes.Numel(o.Shape.AsSpan(0, batchRank));
        bool aT = false;
        Realised ad;
        if (batches == 1 && Orientation(Matrix(a)) is { } oa) { ad = Matrix(a); aT = oa; }
        else ad = Dense(a, [.. o.Shape[..batchRank], m, k]);
        bool? ob = Orientation(b2);
        var bd = ob is null ? Copy(b2) : b2;
        ulong pa = Ptr(ad) + (ulong)(ad.Offset * size), pb = Ptr(bd) + (ulong)(bd.Offset * size), po = Ptr(o) + (ulong)(o.Offset * size);
        Foreign(pa); Foreign(pb); Foreign(po);   // cuBLASLt's kernels: their arguments are not ours to re-point
        ulong pbias = bias is null ? 0 : Ptr(bias) + (ulong)(bias.Offset * size);
        if (bias is not null) Foreign(pbias);
        ulong paux = aux is null ? 0 : Ptr(aux) + (ulong)(aux.Offset * size);
        if (aux is not null) Foreign(paux);
        _blas.Value.MatmulRowMajor((int)(batches * m), n, k, type, pa, pb, po, alpha, beta, _current,
            compute: ComputeFor(type), epilogue: epilogue ?? (bias is null ? CublasLtEpilogue.Default : CublasLtEpilogue.Bias), bias: pbias, aTransposed: aT, bTransposed: ob ?? false, aux: paux,
            tune: CudaKernel.Recorder is null);   // never while a graph is being captured (timing synchronises)
        Interlocked.Increment(ref Launches);
        if (!ReferenceEquals(ad.Buffer, a.Buffer)) Evaluator.Release(ad);
        if (!ReferenceEquals(bd.Buffer, b.Buffer)) Evaluator.Release(bd);
        return true;
    }

    /// <summary>fp32 accumulation; fp32 inputs through TF32 tensor cores when <see cref="Settings.AllowTf32"/> is on.</summary>
    private CublasComputeType ComputeFor(CudaDataType type)
    {
        if (type != CudaDataType.R32F) return CublasComputeType.Compute32F;
        _fp32Gemms = true;   // a plan being captured depends on the setting
        return Settings.AllowTf32 ? CublasComputeType.Compute32FFastTF32 : CublasComputeType.Compute32F;
    }

    private volatile bool _fp32Gemms;   // set by any fp32 GEMM; reset around a capture (CudaGraphs)

    /// <summary>The cuBLASLt storage type of a GEMM in <paramref name="t"/> (fp32 accumulation; TF32 only when
    /// allowed); null for fp64, which a plain kernel does (it is for checking, not speed).</summary>
    private static CudaDataType? GemmType(DType t) => t switch
    {
        DType.Float32 => CudaDataType.R32F,
        DType.BFloat16 => CudaDataType.R16BF,
        DType.Float16 => CudaDataType.R16F,
        _ => null,
    };

    /// <summary>b as one [k, n] matrix view when all its batch axes have size 1 (the same matrix for every batch).</summary>
    private static Realised? SharedMatrix(Realised b)
    {
        for (int d = 0; d < b.Shape.Length - 2; d++) if (b.Shape[d] != 1) return null;
        return Matrix(b);
    }

    /// <summary>The last two axes of v as a 2-D view (the leading axes must have size 1).</summary>
    private static Realised Matrix(Realised v) =>
        v.Shape.Length == 2 ? v : new Realised(v.Buffer, v.Offset, v.Shape[^2..], v.Strides[^2..]);

    /// <summary>false: row-major dense [r, c]; true: a transposed view of a dense [c, r] (column-major); null: neither.</summary>
    private static bool? Orientation(Realised v)
    {
        if (v.Shape.Length != 2) return null;
        int r = v.Shape[0], c = v.Shape[1];
        long s0 = v.Strides[0], s1 = v.Strides[1];
        if ((c == 1 || s1 == 1) && (r == 1 || s0 == c)) return false;
        if ((r == 1 || s0 == 1) && (c == 1 || s1 == r)) return true;
        return null;
    }

    private void NaiveMatMul(Realised a, Realised b, Realised o, long batches, int m, int n, int k)
    {
        var kernel = Kernel("matmul_naive_f64", name => $$"""
            extern "C" __global__ void {{name}}(double* out, const double* a, const double* b, long long batches, int m, int n, int k)
            {
                long long total = batches * m * n;
                for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
                {
                    long long bi = i / ((long long)m * n); int r = (int)(i / n % m), c = (int)(i % n);
                    const double* ar = a + bi * m * k + (long long)r * k; const double* bc = b + bi * k * n + c;
                    double s = 0; for (int j = 0; j < k; ++j) s += ar[j] * bc[(long long)j * n];
                    out[i] = s;
                }
            }
            """);
        long total = batches * m * n;
        if (total == 0) return;
        kernel.Launch((int)Math.Min((total + Threads - 1) / Threads, 65535L * 8), Threads, 0, _current,
            KernelArg.Pointer(Ptr(o)), KernelArg.Pointer(Ptr(a) + (ulong)(a.Offset * 8)), KernelArg.Pointer(Ptr(b) + (ulong)(b.Offset * 8)), batches, m, n, k);
        Interlocked.Increment(ref Launches);
    }

    /// <summary>v broadcast to <paramref name="shape"/> and made dense (v itself when it already is).</summary>
    private Realised Dense(Realised v, int[] shape)
    {
        if (Shapes.Equal(v.Shape, shape) && v.IsContiguous) return v;
        var expanded = Kiln.Cpu.Views.Expand(v, shape);
        var dense = Copy(expanded);
        Evaluator.Release(expanded);
        return dense;
    }
}
