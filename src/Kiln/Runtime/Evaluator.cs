// Eval: optimize the unrealised ancestry of the requested outputs (Passes/), schedule it in dependency levels,
// run the independent nodes of a level in parallel, release intermediates to the buffer pool as soon as their
// last consumer has run, and publish the results into the requested nodes (the tensor cache).
using Kiln.Graph;
using Kiln.Passes;

namespace Kiln.Runtime;

internal static class Evaluator
{
    private static long _kernelRuns;

    /// <summary>Kernels executed since the process started (tests count recomputation with it).</summary>
    public static long KernelRuns => Interlocked.Read(ref _kernelRuns);

    public static void Evaluate(Node[] outputs) => Evaluate(outputs, optimize: !Settings.IsDisabled("optimizer"));

    /// <summary>Evaluates <paramref name="outputs"/>; with <paramref name="optimize"/> off the graph runs exactly as built.</summary>
    internal static void Evaluate(Node[] outputs, bool optimize)
    {
        bool all = true;
        foreach (var o in outputs) all &= o.IsRealised;
        if (all) return;
        var sw = Settings.Log.Contains("eval") ? System.Diagnostics.Stopwatch.StartNew() : null;
        var walk = PlanKey.Build(outputs, optimize);
        var plan = PlanCache.Get(walk, optimize, out bool hit);
        if (!hit && plan.Optimization is { } r && Settings.Log.Contains("plan"))
            Console.Error.WriteLine($"[kiln plan] new plan: {r.NodesBefore} nodes -> {plan.Nodes.Length} kernels in {plan.Levels.Length} levels, " +
                $"{r.Sweeps} sweep(s); " + string.Join(", ", GraphOptimizer.StepNames.Select(n => $"{n} {r.Rewrites.GetValueOrDefault(n)}")));
        if (!hit && plan.AllOnCpu && MemoryPlan.Enabled && Settings.Log.Contains("plan")) Console.Error.WriteLine($"[kiln plan] memory: {plan.Memory.Describe()}");
        Run(plan, walk.SlotValues, walk.Requested);
        if (sw is not null)
            Console.Error.WriteLine($"[kiln eval] {plan.Nodes.Length} kernels in {plan.Levels.Length} levels, plan {(hit ? "hit" : "miss")}, {sw.Elapsed.TotalMicroseconds:F0} µs; " +
                $"arena slices used {MemoryPlan.SlicesUsed}, fallbacks {MemoryPlan.Fallbacks}, copied out {MemoryPlan.CopiedOut} (process totals)");
    }

    /// <summary>Runs a plan with its inputs bound to <paramref name="slots"/>; publishes into <paramref name="requested"/>.</summary>
    private static void Run(Plan plan, Realised[] slots, Node[] requested)
    {
        if (plan.Constants.Length > 0) slots = [.. slots, .. plan.Constants];
        // Hold the inputs' buffers for the run, so a concurrent Dispose of an input cannot pool them mid-read.
        foreach (var s in slots) Interlocked.Increment(ref s.Buffer.Users);
        try
        {
            if (plan.Accelerator is { } device && Backends.For(device) is IPlanRunner runner && runner.TryRun(plan, slots) is { } outs)
                PublishAll(plan, slots, requested, outs);
            else RunLevels(plan, slots, requested);
        }
        finally { foreach (var s in slots) Release(s); }
    }

    /// <summary>Publishes the values a plan runner returned (fresh buffers, one per output node).</summary>
    private static void PublishAll(Plan plan, Realised[] slots, Node[] requested, Dictionary<int, Realised> outs)
    {
        PublishInputOutputs(plan, slots, requested);
        foreach (var (i, v) in outs) Publish(v, plan.OwnersOf[i], requested, 0);
    }

    /// <summary>Requested nodes the optimizer reduced to one of the plan's inputs get a view of that input.</summary>
    private static void PublishInputOutputs(Plan plan, Realised[] slots, Node[] requested)
    {
        for (int k = 0; k < requested.Length; k++)
            if (plan.Outputs[k] < 0) PublishView(requested[k], slots[~plan.Outputs[k]]);
    }

    /// <summary>Peak bytes of intermediates held at once by this thread's last Eval (non-view results; what
    /// memory-saving changes such as gradient checkpointing are measured by).</summary>
    [ThreadStatic] private static long _lastPeakBytes;

    internal static long LastPeakBytes => _lastPeakBytes;

    private static long Bytes(Plan plan, int i, Realised v) =>
        plan.Nodes[i].Op.Fusion == FusionClass.View ? 0 : v.Numel * v.DType.SizeInBytes();

    private static void RunLevels(Plan plan, Realised[] slots, Node[] requested)
    {
        var arena = plan.AllOnCpu && MemoryPlan.Enabled && plan.Memory.HasArena ? new MemoryPlan.Run(plan.Memory) : null;
        try { RunLevels(plan, slots, requested, arena); }
        finally { arena?.Return(); }
    }

    private static void RunLevels(Plan plan, Realised[] slots, Node[] requested, MemoryPlan.Run? arena)
    {
        long live = 0, peak = 0;
        PublishInputOutputs(plan, slots, requested);
        var vals = new Realised?[plan.Nodes.Length];
        var remaining = (int[])plan.Consumers.Clone();
        // Levels run their nodes in parallel on the CPU only: an accelerator's backend queues work on one stream.
        bool parallel = !Settings.IsDisabled("parallel") && Settings.Threads > 1 && plan.AllOnCpu;
        var worth = parallel ? plan.LevelsWorthParallel : null;
        for (int l = 0; l < plan.Levels.Length; l++)
        {
            var level = plan.Levels[l];
            if (parallel && worth![l])
            {
                try
                {
                    System.Threading.Tasks.Parallel.ForEach(level, new ParallelOptions { MaxDegreeOfParallelism = Settings.Threads },
                        i => vals[i] = RunNode(plan, i, vals, slots, arena));
                }
                catch (AggregateException e) when (e.InnerExceptions.Count >= 1)
                {
                    // Surface the kernel's own error (op, index, shape), not the thread pool's wrapper.
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
                }
            }
            else
                foreach (int i in level) vals[i] = RunNode(plan, i, vals, slots, arena);

            foreach (int i in level) live += Bytes(plan, i, vals[i]!);
            peak = Math.Max(peak, live);
            // Release what this level consumed last (bookkeeping after the level, so no thread races a reader).
            foreach (int i in level)
            {
                var owners = plan.OwnersOf[i];
                foreach (int j in plan.Inputs[i])
                    if (j >= 0 && --remaining[j] == 0 && plan.OwnersOf[j].Length == 0) { live -= Bytes(plan, j, vals[j]!); Release(vals[j]!); }
                if (owners.Length > 0) vals[i] = Publish(vals[i]!, owners, requested, remaining[i]);
                else if (remaining[i] == 0) { live -= Bytes(plan, i, vals[i]!); Release(vals[i]!); }
            }
        }
        _lastPeakBytes = peak;
    }

    /// <summary>Gives a computed value to the requested nodes it answers: the first takes it, others get views.
    /// Returns the value later plan nodes read (a copy when <paramref name="v"/> was in the arena).</summary>
    private static Realised Publish(Realised v, int[] owners, Node[] requested, int stillNeeded)
    {
        if (v.Buffer.InArena)
        {
            // The arena goes back to the pool when this run ends: a published value gets memory of its own. (The
            // memory plan keeps values that reach an output out of the arena; this covers kernels that hand back
            // their input's memory.)
            var own = Cpu.Indexing.Copy(v);
            MemoryPlan.CountCopiedOut();
            Release(v);
            v = own;
        }
        BufferPool.ArmReclaim(v.Buffer);
        for (int k = 1; k < owners.Length; k++) PublishView(requested[owners[k]], v);   // views first: v is still ours
        var won = requested[owners[0]].Publish(v);
        // Lost a race with a concurrent Eval of the same node: ours is garbage once this plan is done with it.
        // (Kept to the GC if later plan nodes still read it.)
        if (!ReferenceEquals(won, v) && stillNeeded == 0) Release(v);
        return v;
    }

    private static Realised RunNode(Plan plan, int i, Realised?[] vals, Realised[] slots, MemoryPlan.Run? arena)
    {
        var codes = plan.Inputs[i];
        var inputs = new Realised[codes.Length];
        for (int k = 0; k < codes.Length; k++)
            inputs[k] = (codes[k] >= 0 ? vals[codes[k]] : slots[~codes[k]])
                ?? throw new InvalidOperationException($"internal: input {k} of {plan.Nodes[i]} has no value");
        if (arena is null) return Execute(plan.Nodes[i], inputs);
        BufferPool.Planned = arena.SliceFor(i);
        try
        {
            var r = Execute(plan.Nodes[i], inputs);
            arena.Taken(i, r);
            return r;
        }
        finally { BufferPool.Planned = null; }
    }

    /// <summary>Runs one node's CPU kernel, widening bf16/f16 to fp32 around kernels that compute in fp32.</summary>
    internal static Realised Execute(Node node, Realised[] inputs)
    {
        Interlocked.Increment(ref _kernelRuns);
        long start = KernelProfile.Enabled ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        var r = Run(node, inputs);
        if (KernelProfile.Enabled) KernelProfile.Add(node, start);
        // A kernel that hands back an input object unchanged would let that input's release free the output.
        foreach (var input in inputs)
            if (ReferenceEquals(r, input)) { r = new Realised(r.Buffer, r.Offset, r.Shape, r.Strides); break; }
        GC.KeepAlive(inputs);   // kernels read inputs through spans, which do not keep Buffer objects alive
        return r;
    }

    /// <summary>A kernel run outside any plan and not counted (constant folding at optimization time).</summary>
    internal static Realised RunKernel(Node node, Realised[] inputs) => Run(node, inputs);

    private static Realised Run(Node node, Realised[] inputs)
    {
        if (ReferenceEquals(node.Op, OpTable.ToDevice)) return Transfer(inputs[0], node.Device);
        if (node.Device.Kind != DeviceKind.Cpu)
        {
            for (int k = 0; k < inputs.Length; k++)   // host values (e.g. leaves made before a backend existed) move over
                if (!inputs[k].Buffer.OnDevice) inputs[k] = Backends.For(node.Device).Upload(inputs[k]);
            return Backends.For(node.Device).Execute(node, inputs);
        }
        for (int k = 0; k < inputs.Length; k++)
            if (inputs[k].Buffer.DeviceMemory is { } m)
                throw new InvalidOperationException($"{node.Op.Name}: input {k} is on {m.Device} but the op runs on the CPU; move it with .To(Device.Cpu)");
        if (!node.Op.WidensHalf) return node.Op.Cpu(inputs, node);
        Realised[]? widened = null;
        for (int k = 0; k < inputs.Length; k++)
            if (inputs[k].DType is DType.BFloat16 or DType.Float16)
            {
                widened ??= (Realised[])inputs.Clone();
                widened[k] = Cpu.Convert.Cast(inputs[k], DType.Float32);
            }
        var result = node.Op.Cpu(widened ?? inputs, node);
        if (widened is not null)
            for (int k = 0; k < inputs.Length; k++)
                if (!ReferenceEquals(widened[k], inputs[k]) && !ReferenceEquals(widened[k].Buffer, result.Buffer)) Release(widened[k]);
        if (result.DType != node.DType)
        {
            var narrowed = Cpu.Convert.Cast(result, node.DType);
            Release(result);
            result = narrowed;
        }
        return result;
    }

    /// <summary>Moves a value to <paramref name="target"/>: host to device, device to host, or through the host.</summary>
    internal static Realised Transfer(Realised value, Device target)
    {
        var from = value.Buffer.DeviceMemory?.Device ?? Device.Cpu;
        if (from.Equals(target)) return new Realised(value.Buffer, value.Offset, value.Shape, value.Strides);
        var host = from.Kind == DeviceKind.Cpu ? value : Backends.For(from).Download(value);
        if (target.Kind == DeviceKind.Cpu) return host;
        var moved = Backends.For(target).Upload(host);
        if (!ReferenceEquals(host, value)) Release(host);
        return moved;
    }

    /// <summary>Publishes a view of <paramref name="value"/> (its own user of the buffer) into <paramref name="node"/>.</summary>
    private static void PublishView(Node node, Realised value)
    {
        var view = new Realised(value.Buffer, value.Offset, value.Shape, value.Strides);
        if (!ReferenceEquals(node.Publish(view), view)) Release(view);
    }

    internal static void Release(Realised r)
    {
        if (Interlocked.Decrement(ref r.Buffer.Users) == 0) BufferPool.Return(r.Buffer);
    }
}
