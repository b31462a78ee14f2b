// The engine's structured ops on the GPU through the hand-written kernels (CudaKernels): norms and their packed
// backward, softmax/log-softmax, cross-entropy, RoPE, embedding gather, attention and its packed backward,
// the multi-tensor AdamW update and the global sum of squares. Norms (and their backward), softmax, cross-entropy,
// RoPE and attention (and its backward) in fp32, bf16 and fp16 (fp32 math); the optimizer ops fp32; inputs are made
// dense first.
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Cuda.Backend;

internal sealed partial class CudaBackend
{
    private CudaKernels? _kernelsField;
    private CudaKernels Kern => _kernelsField ??= new CudaKernels(_context, _compiler);
    private CudaStream S => _current ?? GraphStream;   // a blocking stream: ordered with the legacy default stream too
    private readonly Dictionary<string, AdamWBatch> _adamBatches = [];

    private Realised DenseF32(Realised v, string op)
    {
        if (v.DType != DType.Float32) throw new NotSupportedException($"{op} on {_device}: dtype {v.DType.ShortName()} (float32 only on CUDA so far)");
        return v.IsContiguous ? v : Copy(v);
    }

    /// <summary>A row kernel operand: fp32, bf16 or fp16 (the forward norm and softmax kernels have all three), all of one dtype.</summary>
    private Realised DenseRow(Realised v, DType dtype, string op)
    {
        if (v.DType is not (DType.Float32 or DType.BFloat16 or DType.Float16) || v.DType != dtype)
            throw new NotSupportedException($"{op} on {_device}: dtype {v.DType.ShortName()} (float32, bfloat16 or float16, all operands alike, on CUDA so far)");
        return v.IsContiguous ? v : Copy(v);
    }

    private static DevicePtr P(Realised r) => new(Ptr(r) + (ulong)(r.Offset * r.DType.SizeInBytes()));

    /// <summary>The structured op's result, or null when <paramref name="node"/> is not one handled here.</summary>
    private Realised? Model(Node node, Realised[] x)
    {
        var op = node.Op; string name = op.Name;
        if (ReferenceEquals(op, OpTable.RmsNorm) || ReferenceEquals(op, OpTable.LayerNorm))
        {
            var dt = x[0].DType;
            var xs = DenseRow(x[0], dt, name); int cols = xs.Shape[^1]; long rows = cols == 0 ? 0 : xs.Numel / cols;
            var o = Allocate(dt, node.Shape);
            float eps = (float)((NormAttrs)node.Attrs!).Eps;
            var w = DenseRow(x[1], dt, name);
            if (x.Length == 2) { Kern.RmsNorm(P(xs), P(w), P(o), rows, cols, eps, dt, S); ReleaseCopies(x, xs, w); }
            else
            {
                var b = DenseRow(x[2], dt, name);
                Kern.LayerNorm(P(xs), P(w), P(b), P(o), rows, cols, eps, dt, S);
                ReleaseCopies(x, xs, w, b);
            }
            return o;
        }
        if (ReferenceEquals(op, OpTable.RmsNormGrad) || ReferenceEquals(op, OpTable.LayerNormGrad))
        {
            var dt = x[0].DType; int size = dt.SizeInBytes();
            var xs = DenseRow(x[0], dt, name); var w = DenseRow(x[1], dt, name); var g = DenseRow(x[2], dt, name);
            int cols = xs.Shape[^1]; long rows = cols == 0 ? 0 : xs.Numel / cols;
            var o = Allocate(dt, node.Shape);   // packed [dx | dw (| db)]
            float eps = (float)((NormAttrs)node.Attrs!).Eps;
            var dx = P(o); var dw = dx.Offset(xs.Numel * size);
            if (ReferenceEquals(op, OpTable.RmsNormGrad)) Kern.RmsNormBackward(P(xs), P(w), P(g), dx, dw, rows, cols, eps, S, dt);
            else Kern.LayerNormBackward(P(xs), P(w), P(g), dx, dw, dw.Offset((long)cols * size), rows, cols, eps, S, dt);
            ReleaseCopies(x, xs, w, g);
            return o;
        }
        if (ReferenceEquals(op, OpTable.Softmax) || ReferenceEquals(op, OpTable.LogSoftmax))
        {
            int axis = ((IntAttrs)node.Attrs!).Value, rank = node.Shape.Length;
            var dt = x[0].DType;
            // Over another axis: rows along that axis (a permuted view made dense), the result handed back as the
            // inverse view of the dense output (no second copy).
            int[] perm = [.. Enumerable.Range(0, rank).Where(d => d != axis), axis];
            var src = axis == rank - 1 ? x[0] : Kiln.Cpu.Views.Permute(x[0], perm);
            var xs = DenseRow(src, dt, name); int cols = xs.Shape[^1]; long rows = cols == 0 ? 0 : xs.Numel / cols;
            var o = Allocate(dt, xs.Shape);
            if (ReferenceEquals(op, OpTable.Softmax)) Kern.Softmax(P(xs), P(o), rows, cols, dt, S);
            else Kern.LogSoftmax(P(xs), P(o), rows, cols, dt, S);
            if (!ReferenceEquals(xs, x[0]) && !ReferenceEquals(xs, src)) Evaluator.Release(xs);
            if (!ReferenceEquals(src, x[0])) Evaluator.Release(src);   // the permuted view's hold on the input
            if (axis == rank - 1) return o;
            var strides = new long[rank];
            for (int k = 0; k < rank; k++) strides[perm[k]] = o.Strides[k];
            var back = new Realised(o.Buffer, o.Offset, node.Shape, strides);
            Evaluator.Release(o);   // the inverse view holds the buffer now
            return back;
        }
        if (ReferenceEquals(op, OpTable.CrossEntropy) || ReferenceEquals(op, OpTable.CrossEntropyGrad))
        {
            var a = (CrossEntropyAttrs)node.Attrs!;
            var dt = x[0].DType;
            var logits = DenseRow(x[0], dt, name); var t = x[1].IsContiguous ? x[1] : Copy(x[1]);
            if (t.DType is not (DType.Int32 or DType.Int64)) throw new NotSupportedException($"{name} on {_device}: targets must be int32/int64");
            int classes = logits.Shape[^1]; long rows = logits.Shape[0];
            if (ReferenceEquals(op, OpTable.CrossEntropy))
            {
                var rowLoss = Allocate(DType.Float32, [(int)rows]);
                var o = Allocate(dt, []);
                Kern.CrossEntropy(P(logits), P(t), t.DType, P(rowLoss), P(o), rows, classes, a.IgnoreIndex, (float)a.LabelSmoothing, S, dt);
                Evaluator.Release(rowLoss);
                ReleaseCopies(x, logits, t);
                return o;
            }
            var d = Allocate(dt, node.Shape);
            var up = DenseRow(x[2], dt, name);
            Kern.CrossEntropyBackward(P(logits), P(t), t.DType, P(up), P(d), rows, classes, a.IgnoreIndex, (float)a.LabelSmoothing, S, dt);
            ReleaseCopies(x, logits, t, up);
            return d;
        }
        if (ReferenceEquals(op, OpTable.Rope))
        {
            // The position offset is the attribute, or (a decode step) an integer scalar on the device read by the kernel.
            var a = (RopeAttrs)node.Attrs!;
            var xs = DenseRow(x[0], x[0].DType, name); int hd = xs.Shape[^1], seq = xs.Shape[^2];
            var off = x.Length == 2 ? DeviceScalar(x[1], name) : null;
            var o = Allocate(xs.DType, node.Shape);
            Kern.Rope(P(xs), P(o), xs.Numel / Math.Max(hd, 1), seq, hd, a.Theta, a.Offset, a.Interleaved, a.Inverse, xs.DType, S,
                off is null ? default : P(off), off?.DType ?? DType.Int64);
            ReleaseCopies(x, xs);
            return o;
        }
        if (ReferenceEquals(op, OpTable.IndexSelect))
        {
            int axis = ((IntAttrs)node.Attrs!).Value;
            if (axis != 0 || x[0].Shape.Length != 2 || x[0].DType is not (DType.Float32 or DType.BFloat16) || x[1].DType is not (DType.Int32 or DType.Int64))
                return IndexSelectAsGather(node, x[0], x[1], axis);
            // An embedding lookup: rows of a dense table.
            var table = x[0].IsContiguous ? x[0] : Copy(x[0]); var ids = x[1].IsContiguous ? x[1] : Copy(x[1]);
            var o = Allocate(table.DType, node.Shape);
            _indexChecks = true;
            Kern.EmbeddingGather(P(table), P(ids), ids.DType, P(o), ids.Numel, table.Shape[1], table.Shape[0], table.DType, S, IndexErrors());
            if (!ReferenceEquals(table, x[0])) Evaluator.Release(table);
            if (!ReferenceEquals(ids, x[1])) Evaluator.Release(ids);
            return o;
        }
        if (ReferenceEquals(op, OpTable.Attention)) return Attention(node, x, backward: false);
        if (ReferenceEquals(op, OpTable.AttentionGrad)) return Attention(node, x, backward: true);
        if (ReferenceEquals(op, OpTable.SumOfSquares)) return SumOfSquares(node, x);
        if (ReferenceEquals(op, OpTable.AdamWUpdate)) return AdamW(node, x);
        return null;
    }

    /// <summary>Dense copies made here (not the inputs themselves) go back to the allocator at once.</summary>
    private static void ReleaseCopies(Realised[] inputs, params ReadOnlySpan<Realised> used)
    {
        foreach (var u in used)
            if (Array.IndexOf(inputs, u) < 0) Evaluator.Release(u);
    }

    /// <summary>An int32/int64 scalar operand (a KV cache's valid count, a decode position) as a device value the
    /// kernel reads: no host read, so the plan stays capturable.</summary>
    private Realised DeviceScalar(Realised v, string op)
    {
        if (v.Numel != 1 || v.DType is not (DType.Int32 or DType.Int64))
            throw new NotSupportedException($"{op} on {_device}: the count/offset operand must be an int32/int64 scalar (got {v.DType.ShortName()} {Shapes.Format(v.Shape)})");
        return v;   // a scalar is dense; its Offset is honoured by P()
    }

    /// <summary>q (B, H, T, D) or (B, kv, group, T, D) with k, v (B, kv, 1, S, D): the kernel's [batch, heads] layout.
    /// Attention's optional 4th input (attention_grad's 6th) is the valid key count, read by the kernel.</summary>
    private Realised Attention(Node node, Realised[] x, bool backward)
    {
        var a = (AttentionAttrs)node.Attrs!;
        var dt = x[0].DType; int size = dt.SizeInBytes();
        Realised q = DenseRow(x[0], dt, "attention"), k = DenseRow(x[1], dt, "attention"), v = DenseRow(x[2], dt, "attention");
        int validAt = backward ? 5 : 3;
        var valid = x.Length > validAt ? DeviceScalar(x[validAt], node.Op.Name) : null;
        DevicePtr validPtr = valid is null ? default : P(valid);
        var validType = valid?.DType ?? DType.Int64;
        DevicePtr errors = default;
        if (valid is not null) { _indexChecks = true; errors = IndexErrors(); }
        int r = q.Shape.Length, t = q.Shape[^2], d = q.Shape[^1], s = k.Shape[^2];
        int batch, hq, hkv;
        if (r == 5 && k.Shape.Length == 5 && k.Shape[2] == 1 && q.Shape[0] == k.Shape[0] && q.Shape[1] == k.Shape[1])
            (batch, hq, hkv) = (q.Shape[0], q.Shape[1] * q.Shape[2], k.Shape[1]);
        else if (Shapes.Equal(q.Shape.AsSpan(0, r - 2), k.Shape.AsSpan(0, k.Shape.Length - 2)))
            (batch, hq, hkv) = ((int)Shapes.Numel(q.Shape.AsSpan(0, r - 2)), 1, 1);
        else throw new NotSupportedException($"attention on {_device}: batch layout q {Shapes.Format(q.Shape)} k {Shapes.Format(k.Shape)}");
        if (v.Shape[^1] != d) throw new NotSupportedException($"attention on {_device}: value head dim {v.Shape[^1]} differs from {d}");
        var lse = Allocate(DType.Float32, [batch * hq * t]);
        if (!backward)
        {
            var o = Allocate(dt, node.Shape);
            Kern.AttentionForward(P(q), P(k), P(v), P(o), P(lse), batch, hq, hkv, t, s, d, (float)a.Scale, a.Causal, S, dt, validPtr, validType, errors);
            Evaluator.Release(lse);
            ReleaseCopies(x, q, k, v);
            return o;
        }
        // The packed gradient [dq | dk | dv]; the row log-sum-exp comes from re-running the forward.
        var o2 = Allocate(dt, [(int)q.Numel]);
        Kern.AttentionForward(P(q), P(k), P(v), P(o2), P(lse), batch, hq, hkv, t, s, d, (float)a.Scale, a.Causal, S, dt, validPtr, validType, errors);
        var packed = Allocate(dt, node.Shape);
        var dq = P(packed); var dk = dq.Offset(q.Numel * size); var dv = dk.Offset(k.Numel * size);
        var outF = DenseRow(x[3], dt, "attention_grad"); var dO = DenseRow(x[4], dt, "attention_grad");
        Kern.AttentionBackward(P(q), P(k), P(v), P(outF), P(lse), P(dO), dq, dk, dv,
            batch, hq, hkv, t, s, d, (float)a.Scale, a.Causal, S, dt, validPtr, validType, errors);
        Evaluator.Release(lse); Evaluator.Release(o2);
        ReleaseCopies(x, q, k, v, outF, dO);
        return packed;
    }

    private Realised SumOfSquares(Node node, Realised[] x)
    {
        var kernel = Kernel("sum_of_squares_f32", name => $$"""
            extern "C" __global__ void {{name}}(double* acc, const float* x, long long n)
            {
                double s = 0;
                for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) s += (double)x[i] * x[i];
                for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
                if ((threadIdx.x & 31) == 0) atomicAdd(acc, s);
            }
            extern "C" __global__ void {{name}}_out(float* out, const double* acc) { out[0] = (float)acc[0]; }
            """);
        var acc = Allocate(DType.Float64, []);
        Kern.Fill(new DevicePtr(Ptr(acc)), 2, 0f, S);   // 8 bytes of zeros
        foreach (var v in x)
        {
            var d = DenseF32(v, "sum_of_squares");
            if (d.Numel > 0) kernel.Launch((int)Math.Min((d.Numel + Threads - 1) / Threads, 1024), Threads, 0, S, KernelArg.Pointer(Ptr(acc)), P(d), d.Numel);
        }
        var o = Allocate(DType.Float32, []);
        kernel.Module.GetKernel(kernel.Name + "_out").Launch(1, 1, 0, S, P(o), KernelArg.Pointer(Ptr(acc)));
        Evaluator.Release(acc);
        return o;
    }

    private Realised AdamW(Node node, Realised[] x)
    {
        var a = (AdamWAttrs)node.Attrs!;
        var packed = Allocate(DType.Float32, node.Shape);
        var tensors = new List<AdamWTensor>();
        long at = 0;
        for (int i = 4; i < x.Length; i += 4)
        {
            Realised p = DenseF32(x[i], "adamw_update"), g = DenseF32(x[i + 1], "adamw_update"), m = DenseF32(x[i + 2], "adamw_update"), v = DenseF32(x[i + 3], "adamw_update");
            long n = p.Numel;
            var p2 = P(packed).Offset(at * 4); var m2 = p2.Offset(n * 4); var v2 = m2.Offset(n * 4);
            CopyBytes(P(p), p2, n * 4); CopyBytes(P(m), m2, n * 4); CopyBytes(P(v), v2, n * 4);   // the kernel updates in place
            tensors.Add(new AdamWTensor(p2, P(g), m2, v2, n));
            at += 3 * n;
        }
        // The descriptor table depends only on the pointers: stable under a captured graph, so built once there.
        string key = string.Join(",", tensors.Select(t => $"{t.P.Value}:{t.G.Value}:{t.M.Value}:{t.V.Value}:{t.Numel}"));
        foreach (var t in tensors) { Foreign(t.P.Value); Foreign(t.G.Value); Foreign(t.M.Value); Foreign(t.V.Value); }   // kept in a device-side table
        if (!_adamBatches.TryGetValue(key, out var batch)) _adamBatches[key] = batch = Kern.CreateAdamWBatch(tensors);
        var scalars = Allocate(DType.Float32, [4]);   // stepSize, denomScale, decay, gradScale: device values, so replays see new ones
        for (int k = 0; k < 4; k++) CopyBytes(P(DenseF32(x[k], "adamw_update")), P(scalars).Offset(4 * k), 4);
        Kern.AdamW(batch, 0, 0, 0, 0, (float)a.Beta1, (float)a.Beta2, (float)a.Eps, S, P(scalars));
        Evaluator.Release(scalars);
        return packed;
    }

    private void CopyBytes(DevicePtr from, DevicePtr to, long bytes)
    {
        if (bytes <= 0) return;
        Foreign(from.Value); Foreign(to.Value);   // a memcpy node: not re-pointable in a captured graph
        Cu.Check(Native.CuNative.cuMemcpyDtoDAsync_v2(to.Value, from.Value, (nuint)bytes, S.Handle), "cuMemcpyDtoDAsync_v2");
    }
}
