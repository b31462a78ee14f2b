// Eval: optimize the unrealised ancestry of the requested outputs (Passes/), schedule it in dependency levels,
// run the independent nodes of a level in parallel, release intermediates to the buffer pool as soon as their
// last consumer has run, and publish the results into the requested nodes (the tensor cache).
using System.Diagnostics;
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
        var sw = Settings.Log.Contains("eval") ? Stopwatch.StartNew() : null;
        var targets = outputs;
        if (optimize)
        {
            var result = GraphOptimizer.Optimize(outputs);
            targets = result.Outputs;
            if (Settings.Log.Contains("plan"))
                Console.Error.WriteLine($"[kiln plan] {result.NodesBefore} -> {result.NodesAfter} nodes in {result.Sweeps} sweep(s); " +
                    string.Join(", ", GraphOptimizer.StepNames.Select(n => $"{n} {result.Rewrites.GetValueOrDefault(n)}")));
        }
        // Which requested nodes receive each computed value (CSE may merge two outputs into one).
        var publishTo = new Dictionary<Node, List<Node>>(ReferenceEqualityComparer.Instance);
        for (int k = 0; k < outputs.Length; k++)
        {
            if (outputs[k].IsRealised) continue;
            if (targets[k].Value is { } ready) { PublishView(outputs[k], ready); continue; }   // optimized to a realised node
            if (!publishTo.TryGetValue(targets[k], out var list)) publishTo[targets[k]] = list = [];
            if (!list.Contains(outputs[k], ReferenceEqualityComparer.Instance)) list.Add(outputs[k]);
        }
        var plan = Schedule.Build([.. publishTo.Keys]);
        var vals = new Realised?[plan.Nodes.Length];
        var borrowed = new bool[plan.Nodes.Length];   // value published by a concurrent Eval: not ours to release
        var remaining = (int[])plan.Consumers.Clone();
        bool parallel = !Settings.IsDisabled("parallel") && Settings.Threads > 1;
        foreach (var level in plan.Levels)
        {
            if (parallel && level.Length > 1)
            {
                try
                {
                    System.Threading.Tasks.Parallel.ForEach(level, new ParallelOptions { MaxDegreeOfParallelism = Settings.Threads },
                        i => vals[i] = Run(plan, i, vals, borrowed));
                }
                catch (AggregateException e) when (e.InnerExceptions.Count >= 1)
                {
                    // Surface the kernel's own error (op, index, shape), not the thread pool's wrapper.
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
                }
            }
            else
                foreach (int i in level) vals[i] = Run(plan, i, vals, borrowed);

            // Release what this level consumed last (bookkeeping after the level, so no thread races a reader).
            foreach (int i in level)
            {
                foreach (int j in plan.Inputs[i])
                    if (j >= 0 && --remaining[j] == 0 && !plan.Keep[j] && !borrowed[j]) Release(vals[j]!);
                if (plan.Keep[i])
                {
                    var v = vals[i]!;
                    BufferPool.ArmReclaim(v.Buffer);
                    var owners = publishTo[plan.Nodes[i]];
                    var won = owners[0].Publish(v);
                    if (!ReferenceEquals(won, v) && !borrowed[i] && remaining[i] == 0) Release(v);
                    for (int k = 1; k < owners.Count; k++) PublishView(owners[k], v);
                    borrowed[i] = true;   // the requested node owns it now
                }
                else if (remaining[i] == 0 && !borrowed[i]) Release(vals[i]!);
            }
        }
        if (sw is not null)
            Console.Error.WriteLine($"[kiln eval] {plan.Nodes.Length} nodes in {plan.Levels.Length} levels, {sw.Elapsed.TotalMicroseconds:F0} µs");
    }

    private static Realised Run(Schedule plan, int i, Realised?[] vals, bool[] borrowed)
    {
        var node = plan.Nodes[i];
        if (node.Value is { } done) { borrowed[i] = true; return done; }   // another thread's Eval got there first
        var ins = plan.InputNodes[i];
        var inputs = new Realised[ins.Length];
        for (int k = 0; k < ins.Length; k++)
        {
            int j = plan.Inputs[i][k];
            inputs[k] = (j >= 0 ? vals[j] : ins[k].Value)
                ?? throw new InvalidOperationException($"internal: input {k} of {node} has no value");
        }
        return Execute(node, inputs);
    }

    /// <summary>Runs one node's CPU kernel, widening bf16/f16 to fp32 around kernels that compute in fp32.</summary>
    internal static Realised Execute(Node node, Realised[] inputs)
    {
        Interlocked.Increment(ref _kernelRuns);
        var r = Run(node, inputs);
        // A kernel that hands back an input object unchanged would let that input's release free the output.
        foreach (var input in inputs)
            if (ReferenceEquals(r, input)) { r = new Realised(r.Buffer, r.Offset, r.Shape, r.Strides); break; }
        GC.KeepAlive(inputs);   // kernels read inputs through spans, which do not keep Buffer objects alive
        return r;
    }

    private static Realised Run(Node node, Realised[] inputs)
    {
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
