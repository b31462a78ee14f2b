// Batched submission: a plan that runs a second time is captured once into a CUDA Graph and from then on
// replayed as one submission (cuGraphLaunch) instead of one launch per kernel. Capturing needs fixed
// addresses, so the plan gets its own memory: staging buffers for its inputs and an arena for every
// intermediate, recorded during a preparing run and handed out again, in the same order, while capturing.
//
// A replay moves as little data as it can. Every kernel launch of the capture is recorded with the graph node
// it became, so a buffer that only our own kernels touch can be re-pointed (cuGraphExecKernelNodeSetParams):
// - an input is bound to the caller's buffer itself instead of being copied into the staging buffer;
// - an output gets a fresh buffer from the allocator each replay, and the kernels that write it are pointed
//   there, so the caller keeps it and the next replay cannot overwrite it.
// A buffer that cuBLASLt, a memcpy or a device-side pointer table (multi-tensor AdamW) also sees cannot be
// re-pointed (its address is inside code or memory we do not patch): such inputs are staged (skipped when the
// same value as last time) and such outputs are copied out of the arena. KILN_DISABLE=cudarebind stages and
// copies everything; KILN_DISABLE=cudagraph runs the same kernels with plain launches.
// At most MaxGraphs instantiated graphs are kept; the least recently replayed is dropped (and re-captured if
// its plan runs again).
using System.Runtime.CompilerServices;
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Cuda.Backend;

internal sealed partial class CudaBackend : IPlanRunner
{
    private readonly ConditionalWeakTable<Plan, PlanGraph> _graphs = new();
    private readonly LinkedList<PlanGraph> _recent = new();   // instantiated graphs, least recently replayed first
    private CudaStream? _streamField;
    private CudaStream? _current;   // null: the legacy default stream (eager); the graph stream while capturing or replaying
    private Arena? _arena;
    private CaptureLog? _log;

    /// <summary>Graphs captured, replays launched, graphs dropped by the LRU limit, and per replay: inputs used in
    /// place, inputs copied into staging, outputs handed out without a copy, outputs copied out (tests read these).</summary>
    public long Captures, Replays, Evictions, InputsBound, InputsStaged, OutputsHandedOut, OutputsCopied, LaunchesPatched;

    /// <summary>KILN_LOG=cudagraph: one line per replay with where its host time went.</summary>
    private static readonly bool LogReplays = Settings.Log.Contains("cudagraph");

    /// <summary>Test hook: false runs every plan node by node (as KILN_DISABLE=cudagraph does).</summary>
    internal static bool GraphsEnabled = !Settings.IsDisabled("cudagraph");

    /// <summary>Test hook: false stages every input and copies every output (as KILN_DISABLE=cudarebind does).</summary>
    internal static bool RebindEnabled = !Settings.IsDisabled("cudarebind");

    /// <summary>Instantiated graphs kept per device (KILN_CUDA_GRAPHS, default 256).</summary>
    internal static int MaxGraphs = int.TryParse(Environment.GetEnvironmentVariable("KILN_CUDA_GRAPHS"), out var g) && g > 0 ? g : 256;

    private CudaStream GraphStream => _streamField ??= new CudaStream(_context, nonBlocking: false);

    public Dictionary<int, Realised>? TryRun(Plan plan, Realised[] inputs)
    {
        lock (_executeGate) return TryRunCore(plan, inputs);   // see CudaBackend.Upload: one thread drives the GPU
    }

    private Dictionary<int, Realised>? TryRunCore(Plan plan, Realised[] inputs)
    {
        // Plans without kernels (an upload, views) gain nothing from a graph: staging would only add copies.
        if (!GraphsEnabled) return null;
        var pg = _graphs.GetValue(plan, p => new PlanGraph(Capturable(p)));
        lock (pg)
        {
            if (!pg.Capturable || pg.Failed is not null || ++pg.Runs == 1) return null;   // a one-off plan runs eagerly, uncaptured
            _context.MakeCurrent();
            _current = GraphStream;
            try
            {
                if (pg.Exec is not null && pg.Fp32Gemms && pg.Tf32 != Settings.AllowTf32)
                {
                    // The GEMMs' compute type is fixed in a captured graph: capture again under the new setting.
                    GraphStream.Synchronize();
                    pg.Drop(_alloc);
                    lock (_recent) { if (pg.Recent is not null) { _recent.Remove(pg.Recent); pg.Recent = null; } }
                }
                if (pg.Exec is null) { pg.Tf32 = Settings.AllowTf32; Capture(plan, inputs, pg); }
                long t0 = LogReplays ? System.Diagnostics.Stopwatch.GetTimestamp() : 0, staged0 = InputsStaged, patched0 = LaunchesPatched;
                Touch(pg);
                _batch = BatchCopies ? new CopyBatch() : null;   // the replay's dense staging copies: one launch
                Bind(inputs, pg);
                FlushCopies();
                long t1 = LogReplays ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                var fresh = RebindOutputs(pg);
                Patch(pg);
                long t2 = LogReplays ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                pg.Exec!.Launch(GraphStream);
                long t3 = LogReplays ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                Interlocked.Increment(ref Replays);
                var outs = new Dictionary<int, Realised>();
                int copied = 0;
                Dictionary<Runtime.Buffer, Realised>? spans = null;
                foreach (var (i, v, group) in pg.Outputs)
                {
                    if (group >= 0) { outs[i] = new Realised(fresh[group], v.Offset, v.Shape, v.Strides); Interlocked.Increment(ref OutputsHandedOut); continue; }
                    Interlocked.Increment(ref OutputsCopied); copied++;
                    if (pg.SharedCopies.Contains(v.Buffer))
                    {
                        // Views of one buffer (an unpacked multi-output op: AdamW's parameters and moments) share one
                        // copy of the buffer, as an eager run hands them out: one allocation and one copy, not one each.
                        spans ??= [];
                        if (!spans.TryGetValue(v.Buffer, out var copy))
                        {
                            var whole = Realised.Contiguous(v.Buffer, [checked((int)v.Buffer.Length)]);
                            spans[v.Buffer] = copy = CopyOut(whole);
                            Evaluator.Release(whole);   // graph-owned memory: only the count of users moves
                        }
                        outs[i] = new Realised(copy.Buffer, v.Offset, v.Shape, v.Strides);
                    }
                    else outs[i] = CopyOut(v);
                }
                FlushCopies();
                if (spans is not null) foreach (var copy in spans.Values) Evaluator.Release(copy);   // the views hold the copy now
                if (LogReplays)
                {
                    long t4 = System.Diagnostics.Stopwatch.GetTimestamp();
                    double Us(long a, long b) => System.Diagnostics.Stopwatch.GetElapsedTime(a, b).TotalMicroseconds;
                    Console.Error.WriteLine($"[kiln cudagraph] replay of {pg.Launches.Length} launches: bind {Us(t0, t1):F0} µs ({inputs.Length} inputs, {InputsStaged - staged0} staged), " +
                        $"outputs+patch {Us(t1, t2):F0} µs ({LaunchesPatched - patched0} launches re-pointed), launch {Us(t2, t3):F0} µs, copy-out {Us(t3, t4):F0} µs ({copied} of {pg.Outputs.Length} outputs)");
                }
                return outs;
            }
            catch (CudaException e) when (pg.Exec is null)
            {
                // A plan that cannot be captured keeps running eagerly; why is kept for KILN_LOG=plan and tests.
                pg.Failed = e.Message;
                if (Settings.Log.Contains("plan")) Console.Error.WriteLine($"[kiln cuda] plan not captured, running eagerly: {e.Message}");
                return null;
            }
            finally { _current = null; _arena = null; _log = null; _batch = null; CudaKernel.Recorder = null; }
        }
    }

    /// <summary>Whether a graph can hold <paramref name="plan"/> and gains from it (decided once per plan).</summary>
    /// <summary>No op reads a value back to the host mid-plan (a decode step's valid count and position are read
    /// by the kernels), so every plan with a kernel can be captured.</summary>
    private static bool Capturable(Plan plan) =>
        !plan.Nodes.All(n => ReferenceEquals(n.Op, OpTable.ToDevice) || n.Op.Fusion == FusionClass.View);

    /// <summary>During a capture: <paramref name="pointer"/> is handed to code whose use of it cannot be re-pointed later.</summary>
    private void Foreign(ulong pointer) => _log?.Foreign.Add(pointer);

    private void Capture(Plan plan, Realised[] inputs, PlanGraph pg)
    {
        pg.Staged = inputs.Select(v => Realised.Contiguous(new Runtime.Buffer(v.DType, CudaMemory.Pinned(_alloc, Math.Max(v.Numel, 1) * v.DType.SizeInBytes()), v.Numel), v.Shape)).ToArray();
        pg.Sources = new Realised?[inputs.Length];
        Stage(inputs, pg);
        // Preparing run: compiles kernels, uploads their metadata and records the arena (all outside capture).
        _arena = new Arena(_alloc);
        ExecuteAll(plan, pg.Staged);
        _arena.Replay();
        // Side streams and their cuBLASLt workspaces exist before capturing: allocating inside a capture is refused.
        while (_sideStreams.Length < SideStreams) _sideStreams = [.. _sideStreams, new CudaStream(_context, nonBlocking: true)];
        if (_blas.IsValueCreated) foreach (var side in _sideStreams) _blas.Value.EnsureWorkspace(side);
        _log = new CaptureLog();
        _fp32Gemms = false;
        CudaKernel.Recorder = _log;
        GraphStream.BeginCapture(StreamCaptureMode.ThreadLocal);
        Realised[] vals;
        var events = new List<CudaEvent>();
        try { vals = SideStreams > 0 ? ExecuteForked(plan, pg.Staged, events) : ExecuteAll(plan, pg.Staged); }
        catch { try { GraphStream.EndCapture().Dispose(); } catch (CudaException) { } foreach (var e in events) e.Dispose(); throw; }
        finally { CudaKernel.Recorder = null; _current = GraphStream; }
        pg.Fp32Gemms = _fp32Gemms;
        pg.Graph = GraphStream.EndCapture();   // kept: its node handles address the exec's nodes when re-pointing
        foreach (var e in events) e.Dispose();   // captured as graph edges; the events themselves are done
        pg.Exec = pg.Graph.Instantiate();
        pg.Arena = _arena;
        _arena = null;   // the outputs' copies come from the ordinary allocator
        var outputs = plan.OwnersOf.Select((o, i) => (o, i)).Where(t => t.o.Length > 0).Select(t => (t.i, vals[t.i])).ToArray();
        Relocatable(pg, outputs, _log);
        Interlocked.Increment(ref Captures);
        Evict(keep: pg);
    }

    /// <summary>
    /// Decides which staged inputs and output buffers can be re-pointed: those whose address reached only our
    /// own recorded kernel launches. Records, per launch, which arguments point into which of them.
    /// </summary>
    private void Relocatable(PlanGraph pg, (int Node, Realised Value)[] outputs, CaptureLog log)
    {
        bool ok = RebindEnabled && !log.Broken;
        bool Free(Binding b) => ok && !log.Foreign.Any(b.Contains);
        pg.Inputs = pg.Staged!.Select(s => new Binding(Mem(s).Pointer, Mem(s).Bytes)).Select(b => Free(b) ? b : null).ToArray();
        var groups = new List<(Runtime.Buffer Captured, Binding B)>();
        var outs = new List<(int, Realised, int)>();
        foreach (var (i, v) in outputs)
        {
            int g = groups.FindIndex(t => ReferenceEquals(t.Captured, v.Buffer));
            if (g < 0 && v.Buffer.DeviceMemory is CudaMemory m && pg.Arena!.Owns(m)
                && !outputs.Any(o => !ReferenceEquals(o.Value.Buffer, v.Buffer) && ReferenceEquals(o.Value.Buffer.DeviceMemory, m))
                && new Binding(m.Pointer, m.Bytes) is var b && Free(b))
            {
                groups.Add((v.Buffer, b));
                g = groups.Count - 1;
            }
            outs.Add((i, v, g));
        }
        pg.Outputs = outs.ToArray();
        pg.OutputGroups = groups.ToArray();
        pg.SharedCopies = new HashSet<Runtime.Buffer>(outs.Where(o => o.Item3 < 0).GroupBy(o => o.Item2.Buffer, ReferenceEqualityComparer.Instance)
            .Where(g => g.Count() > 1 && g.Sum(o => o.Item2.Numel) * 2 >= ((Runtime.Buffer)g.Key!).Length)   // worth copying whole
            .Select(g => (Runtime.Buffer)g.Key!), ReferenceEqualityComparer.Instance);
        var all = pg.Inputs.OfType<Binding>().Concat(groups.Select(t => t.B)).ToArray();
        pg.Launches = log.Launches.ToArray();
        pg.Uses = new (int Arg, Binding B)[pg.Launches.Length][];
        for (int l = 0; l < pg.Launches.Length; l++)
        {
            var uses = new List<(int, Binding)>();
            var args = pg.Launches[l].Args;
            for (int a = 0; a < args.Length; a++)
                foreach (var b in all)
                    if (b.Contains(args[a])) { uses.Add((a, b)); b.Launches.Add(l); }
            pg.Uses[l] = uses.ToArray();
        }
    }

    private static CudaMemory Mem(Realised r) => (CudaMemory)r.Buffer.DeviceMemory!;

    /// <summary>Runs the plan's nodes in order over device inputs; every value is kept (they live in the arena).</summary>
    private Realised[] ExecuteAll(Plan plan, Realised[] inputs)
    {
        var vals = new Realised[plan.Nodes.Length];
        for (int i = 0; i < plan.Nodes.Length; i++)
        {
            var codes = plan.Inputs[i];
            var ins = new Realised[codes.Length];
            for (int k = 0; k < codes.Length; k++) ins[k] = codes[k] >= 0 ? vals[codes[k]] : inputs[~codes[k]];
            vals[i] = ReferenceEquals(plan.Nodes[i].Op, OpTable.ToDevice)
                ? new Realised(ins[0].Buffer, ins[0].Offset, ins[0].Shape, ins[0].Strides)   // an upload of an input: staging did it
                : Execute(plan.Nodes[i], ins);
        }
        return vals;
    }

    /// <summary>Side streams a capture may fork independent branches onto (KILN_DISABLE=cudastreams: none, one stream).</summary>
    internal static int SideStreams = Settings.IsDisabled("cudastreams") ? 0 : 3;

    /// <summary>Plan nodes captured on a side stream, i.e. in a branch the GPU can run beside another (tests read it).</summary>
    public long ForkedNodes;

    private CudaStream[] _sideStreams = [];

    /// <summary>
    /// The capturing run with independent branches on forked streams: each node continues the stream of a producer
    /// it is the next step of, otherwise takes the least recently used stream; a producer on another stream is
    /// waited for through an event (a graph edge once captured), and every side stream joins the graph stream at
    /// the end. A single chain stays on the graph stream with no events at all. The arena hands out the same
    /// blocks in the same order as the preparing run, and no block is reused within a plan, so branches running
    /// at once never share memory (cuBLASLt gets a workspace per stream).
    /// </summary>
    private Realised[] ExecuteForked(Plan plan, Realised[] inputs, List<CudaEvent> events)
    {
        int n = plan.Nodes.Length;
        var pool = new CudaStream[SideStreams + 1];
        pool[0] = GraphStream;
        for (int k = 1; k < pool.Length; k++) pool[k] = _sideStreams[k - 1];
        var streamOf = Schedule(plan, pool.Length);
        var needsEvent = new bool[n];
        for (int i = 0; i < n; i++)
            foreach (int p in Producers(plan, streamOf, i))
                if (streamOf[p] != streamOf[i]) needsEvent[p] = true;
        CudaEvent NewEvent() { var e = new CudaEvent(_context, timing: false); events.Add(e); return e; }
        var fork = NewEvent();
        fork.Record(GraphStream);   // side streams join the capture by waiting on the graph stream first
        var joined = new bool[pool.Length];
        var done = new CudaEvent?[n];
        var vals = new Realised[n];
        for (int i = 0; i < n; i++)
        {
            var codes = plan.Inputs[i];
            var ins = new Realised[codes.Length];
            for (int k = 0; k < codes.Length; k++) ins[k] = codes[k] >= 0 ? vals[codes[k]] : inputs[~codes[k]];
            if (streamOf[i] < 0) { vals[i] = new Realised(ins[0].Buffer, ins[0].Offset, ins[0].Shape, ins[0].Strides); continue; }   // staged upload
            int s = streamOf[i];
            if (s > 0 && !joined[s]) { pool[s].Wait(fork); joined[s] = true; }
            foreach (int p in Producers(plan, streamOf, i))
                if (streamOf[p] != s) pool[s].Wait(done[p]!);
            _current = pool[s];
            vals[i] = Execute(plan.Nodes[i], ins);
            if (s > 0) Interlocked.Increment(ref ForkedNodes);
            if (needsEvent[i]) { done[i] = NewEvent(); done[i]!.Record(pool[s]); }
        }
        _current = GraphStream;
        for (int s = 1; s < pool.Length; s++)
            if (joined[s]) { var e = NewEvent(); e.Record(pool[s]); GraphStream.Wait(e); }
        return vals;
    }

    /// <summary>Stream per node (-1: a staged upload, no work); see ExecuteForked.</summary>
    internal static int[] Schedule(Plan plan, int streams)
    {
        int n = plan.Nodes.Length;
        var streamOf = new int[n];
        var tail = new int[streams];
        var lastUse = new int[streams];
        Array.Fill(tail, -1);
        Array.Fill(lastUse, -1);
        for (int i = 0; i < n; i++)
        {
            if (ReferenceEquals(plan.Nodes[i].Op, OpTable.ToDevice)) { streamOf[i] = -1; continue; }
            int s = -1;
            foreach (int p in Producers(plan, streamOf, i))
                if (tail[streamOf[p]] == p) { s = streamOf[p]; break; }
            if (s < 0)
            {
                s = 0;
                for (int k = 1; k < streams; k++) if (lastUse[k] < lastUse[s]) s = k;
            }
            streamOf[i] = s; tail[s] = i; lastUse[s] = i;
        }
        return streamOf;
    }

    /// <summary>The plan nodes node <paramref name="i"/> reads that do work (not staged uploads), each once.</summary>
    private static IEnumerable<int> Producers(Plan plan, int[] streamOf, int i)
    {
        var codes = plan.Inputs[i];
        for (int k = 0; k < codes.Length; k++)
        {
            int c = codes[k];
            if (c < 0 || streamOf[c] < 0) continue;
            bool seen = false;
            for (int j = 0; j < k; j++) seen |= codes[j] == c;
            if (!seen) yield return c;
        }
    }

    /// <summary>Copies each input into the plan's staging buffer unless it is the very value staged last time.</summary>
    private void Stage(Realised[] inputs, PlanGraph pg)
    {
        for (int k = 0; k < inputs.Length; k++)
            if (!SameSource(pg, k, inputs[k])) StageOne(inputs[k], pg, k);
    }

    private static bool SameSource(PlanGraph pg, int k, Realised v) =>
        pg.Sources![k] is { } last && ReferenceEquals(last.Buffer, v.Buffer) && last.Offset == v.Offset && last.Strides.AsSpan().SequenceEqual(v.Strides);

    private void StageOne(Realised v, PlanGraph pg, int k)
    {
        var source = v;
        if (!v.Buffer.OnDevice) v = Upload(v);
        // Batched only for values already on the device (an uploaded temporary would have no owner until the flush).
        if (_batch is not null && source.Buffer.OnDevice && v.IsContiguous) _batch.Add(P(v), P(pg.Staged![k]), v.Numel * v.DType.SizeInBytes());
        else Copy(v, into: pg.Staged![k]);
        pg.Sources![k] = source;   // kept alive so its buffer cannot be reused under the same identity
        if (k < pg.Inputs.Length && pg.Inputs[k] is { } b) b.Current = b.Original;   // (no bindings yet while capturing)
        Interlocked.Increment(ref InputsStaged);
    }

    /// <summary>KILN_DISABLE=cudabatchcopy: a replay's staging copies and copy-outs as one memcpy each.</summary>
    internal static bool BatchCopies = !Settings.IsDisabled("cudabatchcopy");

    private CopyBatch? _batch;

    /// <summary>An output the graph cannot hand over (it was written by code we cannot re-point): a fresh dense copy,
    /// queued in the replay's copy batch when dense.</summary>
    private Realised CopyOut(Realised v)
    {
        if (_batch is null || !v.IsContiguous) return Copy(v);
        var o = Allocate(v.DType, v.Shape);
        _batch.Add(P(v), P(o), v.Numel * v.DType.SizeInBytes());
        return o;
    }

    /// <summary>
    /// Queues the collected copies as one kernel launch per <see cref="CopyBatch.Capacity"/> copies (a memcpy call costs
    /// the host ~3-7 µs on the H100 server, and a training step's replay had ~420 of them). The copies' sources and
    /// destinations travel in the launch's parameters, so nothing is uploaded first.
    /// </summary>
    private void FlushCopies()
    {
        if (_batch is not { Count: > 0 } batch) return;
        var kernel = Kernel("copy_batch", name => $$"""
            struct kiln_copy { const unsigned char* src; unsigned char* dst; long long bytes; };
            struct kiln_copies { int n; int pad; kiln_copy e[{{CopyBatch.Capacity}}]; };
            struct __align__(16) kiln_u4 { unsigned x, y, z, w; };
            // Bytes up to the first W-aligned address, W-byte lanes, the bytes left (src and dst equally misaligned).
            template <typename W> __device__ void kiln_copy_lanes(const kiln_copy& e, long long i0, long long step)
            {
                const unsigned long long w = sizeof(W);
                long long head = (long long)((w - ((unsigned long long)e.src & (w - 1))) & (w - 1));
                if (head > e.bytes) head = e.bytes;
                long long n = (e.bytes - head) / (long long)w, tail = head + n * (long long)w;
                if (i0 < head) e.dst[i0] = e.src[i0];
                if (i0 < e.bytes - tail) e.dst[tail + i0] = e.src[tail + i0];
                const W* s = (const W*)(e.src + head); W* d = (W*)(e.dst + head);
                for (long long i = i0; i < n; i += step) d[i] = s[i];
            }
            extern "C" __global__ void {{name}}(kiln_copies c)
            {
                if ((int)blockIdx.y >= c.n) return;
                kiln_copy e = c.e[blockIdx.y];
                long long i0 = (long long)blockIdx.x * blockDim.x + threadIdx.x, step = (long long)gridDim.x * blockDim.x;
                unsigned long long skew = (unsigned long long)e.src ^ (unsigned long long)e.dst;
                if ((skew & 15ULL) == 0) kiln_copy_lanes<kiln_u4>(e, i0, step);
                else if ((skew & 3ULL) == 0) kiln_copy_lanes<unsigned>(e, i0, step);
                else kiln_copy_lanes<unsigned char>(e, i0, step);
            }
            """);
        foreach (var (parameters, count, maxBytes) in batch.Launches())
        {
            // Enough blocks for the largest copy to fill the GPU (each copy's row of blocks exits once its part is done).
            uint blocks = (uint)Math.Clamp((maxBytes / 16 + Threads - 1) / Threads, 1, Math.Max(64, _context.Device.SmCount * 4));
            kernel.LaunchPacked(new Dim3(blocks, (uint)count), Threads, 0, _current, parameters);
            Interlocked.Increment(ref Launches);
        }
        batch.Clear();
    }

    /// <summary>Device-to-device copies gathered for one launch: the kernel's by-value parameter block
    /// ({int n; int pad; {src, dst, bytes}[Capacity]}), at most 4 KB as every CUDA device accepts.</summary>
    private sealed class CopyBatch
    {
        public const int Capacity = 160;
        private readonly List<(ulong Src, ulong Dst, long Bytes)> _copies = [];
        public int Count => _copies.Count;
        public void Add(DevicePtr src, DevicePtr dst, long bytes) { if (bytes > 0) _copies.Add((src.Value, dst.Value, bytes)); }
        public void Clear() => _copies.Clear();

        public IEnumerable<(byte[] Parameters, int Count, long MaxBytes)> Launches()
        {
            for (int start = 0; start < _copies.Count; start += Capacity)
            {
                int n = Math.Min(Capacity, _copies.Count - start);
                var block = new byte[8 + 24 * Capacity];
                BitConverter.TryWriteBytes(block.AsSpan(0, 4), n);
                long max = 0;
                for (int k = 0; k < n; k++)
                {
                    var (src, dst, bytes) = _copies[start + k];
                    var at = block.AsSpan(8 + 24 * k);
                    BitConverter.TryWriteBytes(at, src); BitConverter.TryWriteBytes(at[8..], dst); BitConverter.TryWriteBytes(at[16..], bytes);
                    max = Math.Max(max, bytes);
                }
                yield return (block, n, max);
            }
        }
    }

    /// <summary>Points each re-pointable input at the caller's buffer (dense, on this device, aligned); stages the rest.</summary>
    private void Bind(Realised[] inputs, PlanGraph pg)
    {
        for (int k = 0; k < inputs.Length; k++)
        {
            var v = inputs[k];
            if (SameSource(pg, k, v)) continue;
            if (pg.Inputs[k] is { } b && v.Buffer.DeviceMemory is CudaMemory m && ReferenceEquals(m.Device, _device) && v.IsContiguous
                && (m.Pointer + (ulong)(v.Offset * v.DType.SizeInBytes())) is var data && data % 256 == b.Original % 256)
            {
                b.Current = data;   // the staged address was 256-aligned; vectorized kernels chose their path on it
                pg.Sources![k] = v;
                Interlocked.Increment(ref InputsBound);
            }
            else StageOne(v, pg, k);
        }
    }

    /// <summary>A fresh buffer for every re-pointable output group (the caller owns it after the replay).</summary>
    private Runtime.Buffer[] RebindOutputs(PlanGraph pg)
    {
        var fresh = new Runtime.Buffer[pg.OutputGroups.Length];
        for (int g = 0; g < fresh.Length; g++)
        {
            var (captured, b) = pg.OutputGroups[g];
            var mem = _alloc.Rent(b.Bytes);
            b.Current = mem.Pointer;
            fresh[g] = new Runtime.Buffer(captured.DType, mem, captured.Length);
        }
        return fresh;
    }

    /// <summary>Re-points every recorded launch whose buffers moved since the exec last saw them.</summary>
    private void Patch(PlanGraph pg)
    {
        // No allocation per replay: one reused set, and nothing at all when no binding moved.
        var dirty = pg.Dirty;
        dirty.Clear();
        foreach (var b in pg.Inputs)
            if (b is not null && b.Current != b.Applied) { dirty.UnionWith(b.Launches); b.Applied = b.Current; }
        foreach (var (_, b) in pg.OutputGroups)
            if (b.Current != b.Applied) { dirty.UnionWith(b.Launches); b.Applied = b.Current; }
        if (dirty.Count == 0) return;
        Span<ulong> args = stackalloc ulong[64];
        foreach (int l in dirty)
        {
            var rec = pg.Launches[l];
            var a = rec.Args.Length <= args.Length ? args[..rec.Args.Length] : new ulong[rec.Args.Length];
            rec.Args.CopyTo(a);
            foreach (var (arg, b) in pg.Uses[l]) a[arg] = rec.Args[arg] - b.Original + b.Current;
            pg.Exec!.SetKernelArgs(rec.Node, rec.Kernel, rec.Grid, rec.Block, rec.Shared, a);
        }
        Interlocked.Add(ref LaunchesPatched, dirty.Count);
    }

    /// <summary>Allocator figures plus the memory the instantiated graphs own.</summary>
    public CudaMemoryStats MemoryStats()
    {
        lock (_recent)
        {
            long bytes = _recent.Sum(pg => (pg.Arena?.Bytes ?? 0) + (pg.Staged?.Sum(s => Mem(s).Bytes) ?? 0));
            return _alloc.Stats(bytes, _recent.Count);
        }
    }

    /// <summary>Marks <paramref name="pg"/> most recently used.</summary>
    private void Touch(PlanGraph pg)
    {
        lock (_recent)
        {
            if (pg.Recent is not null) _recent.Remove(pg.Recent);
            pg.Recent = _recent.AddLast(pg);
        }
    }

    /// <summary>
    /// Drops the least recently replayed graphs above MaxGraphs. A graph busy on another thread is skipped, and so is
    /// <paramref name="keep"/>, the one just captured: this thread holds its lock, so TryEnter alone would not spare it.
    /// </summary>
    private void Evict(PlanGraph keep)
    {
        lock (_recent)
        {
            var node = _recent.First;
            while (_recent.Count >= MaxGraphs && node is not null)
            {
                var next = node.Next;
                var victim = node.Value;
                if (victim != keep && Monitor.TryEnter(victim))
                {
                    try
                    {
                        GraphStream.Synchronize();   // its last replay may still be reading the memory given back below
                        victim.Drop(_alloc);
                        _recent.Remove(node);
                        victim.Recent = null;
                        Interlocked.Increment(ref Evictions);
                    }
                    finally { Monitor.Exit(victim); }
                }
                node = next;
            }
        }
    }

    /// <summary>A buffer the captured kernels address: where it was at capture, where it is now, which launches use it.</summary>
    private sealed class Binding(ulong original, long bytes)
    {
        public readonly ulong Original = original;
        public readonly long Bytes = bytes;
        public ulong Current = original, Applied = original;
        public readonly HashSet<int> Launches = [];
        public bool Contains(ulong p) => p >= Original && p < Original + (ulong)Bytes;
    }

    private sealed record LaunchRecord(IntPtr Node, CudaKernel Kernel, Dim3 Grid, Dim3 Block, int Shared, ulong[] Args);

    /// <summary>The launches of one capture with their graph nodes, and the pointers given to anything else.</summary>
    private sealed class CaptureLog : ILaunchRecorder
    {
        public readonly List<LaunchRecord> Launches = [];
        public readonly List<ulong> Foreign = [];
        public bool Broken;

        public void Launched(CudaKernel kernel, Dim3 grid, Dim3 block, int sharedBytes, CudaStream? on, ReadOnlySpan<KernelArg> args)
        {
            // On the graph stream or a side stream forked from it (the legacy stream cannot be captured).
            var node = on is not null ? CudaGraphExec.LastCapturedNode(on) : IntPtr.Zero;
            if (node == IntPtr.Zero) { Broken = true; return; }   // not a single new node on the capture stream: re-point nothing
            var bits = new ulong[args.Length];
            for (int i = 0; i < args.Length; i++) bits[i] = args[i].Bits;
            Launches.Add(new LaunchRecord(node, kernel, grid, block, sharedBytes, bits));
        }
    }

    private sealed class PlanGraph(bool capturable)
    {
        public readonly bool Capturable = capturable;
        public readonly HashSet<int> Dirty = [];
        public int Runs;
        public string? Failed;
        public CudaGraph? Graph;
        public CudaGraphExec? Exec;
        public Arena? Arena;
        public Realised[]? Staged;
        public Realised?[]? Sources;
        public Binding?[] Inputs = [];
        public (Runtime.Buffer Captured, Binding B)[] OutputGroups = [];
        public (int Node, Realised Value, int Group)[] Outputs = [];
        public LaunchRecord[] Launches = [];
        public (int Arg, Binding B)[][] Uses = [];
        public LinkedListNode<PlanGraph>? Recent;
        public bool Tf32;        // Settings.AllowTf32 when captured
        public bool Fp32Gemms;   // it captured fp32 GEMMs, whose compute type follows Settings.AllowTf32
        /// <summary>Captured buffers that several copied-out outputs are views of (copied once per replay, see TryRunCore).</summary>
        public HashSet<Runtime.Buffer> SharedCopies = new(ReferenceEqualityComparer.Instance);

        /// <summary>Destroys the graph and gives its memory back; the plan is captured again if it runs again.</summary>
        public void Drop(CudaAllocator alloc)
        {
            Exec?.Dispose(); Graph?.Dispose();
            Exec = null; Graph = null;
            Arena?.Free();
            foreach (var s in Staged ?? []) ((CudaMemory)s.Buffer.DeviceMemory!).Free();
            Arena = null; Staged = null; Sources = null;
            Inputs = []; OutputGroups = []; Outputs = []; Launches = []; Uses = [];
        }
    }

    /// <summary>Intermediate memory of one captured plan: recorded in order, then handed out again in order.</summary>
    private sealed class Arena(CudaAllocator alloc)
    {
        private readonly List<CudaMemory> _blocks = [];
        private int _next = -1;

        public void Replay() => _next = 0;

        public bool Owns(CudaMemory m) => _blocks.Contains(m);

        public long Bytes => _blocks.Sum(b => b.Bytes);

        public void Free() { foreach (var b in _blocks) b.Free(); _blocks.Clear(); }

        public CudaMemory Rent(long bytes)
        {
            if (_next < 0)
            {
                var m = CudaMemory.Pinned(alloc, bytes);
                _blocks.Add(m);
                return m;
            }
            if (_next >= _blocks.Count || _blocks[_next].Bytes < bytes)
                throw new CudaException("capture", 0, "KILN_ARENA_MISMATCH", "the captured run allocated differently from the preparing run", $"allocation {_next}");
            return _blocks[_next++];
        }
    }
}
