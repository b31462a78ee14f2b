// torch.gather and scatter_add on the GPU, and index_select / index_add through them (any rank, strided inputs, int32 or int64 indices). A kernel cannot
// throw, so an out-of-range index is recorded in a small device word and reported, as the CPU does, with the op,
// the index and the axis size, by the next download (the first point where the host waits for the GPU anyway).
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Cuda.Backend;

internal sealed partial class CudaBackend
{
    private DeviceBuffer? _indexErrors;   // [flag, index, axis size, op]; zero while no error is pending

    private DeviceBuffer IndexErrors()
    {
        if (_indexErrors is null)
        {
            var b = DeviceBuffer.Allocate<long>(_context, 4);
            b.Fill(0);
            _indexErrors = b;
        }
        return _indexErrors;
    }

    /// <summary>The op's result, or null when <paramref name="node"/> is not gather or scatter_add.</summary>
    private Realised? Index(Node node, Realised[] x)
    {
        if (ReferenceEquals(node.Op, OpTable.IndexAdd)) return IndexAddAsScatter(node, x);   // also a KV cache's write
        bool gather = ReferenceEquals(node.Op, OpTable.Gather);
        if (!gather && !ReferenceEquals(node.Op, OpTable.ScatterAdd)) return null;
        return GatherOrScatter(node, x, gather, ((IntAttrs)node.Attrs!).Value, gather ? 0 : 1);
    }

    /// <summary>index_select (1-D ids along <paramref name="axis"/>) as a gather whose index is the ids broadcast to the
    /// output's shape (stride 0 on every other axis): any rank, dtype and axis.</summary>
    private Realised IndexSelectAsGather(Node node, Realised data, Realised ids, int axis)
    {
        var strides = new long[node.Shape.Length];
        strides[axis] = ids.Strides[0];
        var broadcast = new Realised(ids.Buffer, ids.Offset, node.Shape, strides);
        var r = GatherOrScatter(node, [data, broadcast], gather: true, axis, opCode: 2);
        Evaluator.Release(broadcast);
        return r;
    }

    /// <summary>index_add (out = base; out[.., idx[j], ..] += src[.., j, ..]) as a scatter_add whose index is the ids
    /// broadcast to the source's shape.</summary>
    private Realised IndexAddAsScatter(Node node, Realised[] x)
    {
        int axis = ((IntAttrs)node.Attrs!).Value;
        var (ids, src) = (x[1], x[2]);
        var strides = new long[src.Shape.Length];
        strides[axis] = ids.Strides[0];
        var broadcast = new Realised(ids.Buffer, ids.Offset, src.Shape, strides);
        var r = GatherOrScatter(node, [x[0], broadcast, src], gather: false, axis, opCode: 3);
        Evaluator.Release(broadcast);
        return r;
    }

    private Realised GatherOrScatter(Node node, Realised[] x, bool gather, int axis, int opCode)
    {
        var (data, idx) = (x[0], x[1]);
        if (idx.DType is not (DType.Int32 or DType.Int64))
            throw new NotSupportedException($"{node.Op.Name} on {_device}: index dtype {idx.DType.ShortName()} (int32 or int64)");
        if (!gather && !CudaIndexCodegen.ScatterAddSupports(data.DType))
            throw new NotSupportedException($"{node.Op.Name} on {_device}: dtype {data.DType.ShortName()} (float32, float64, int32, int64)");
        int rank = idx.Shape.Length;
        var err = IndexErrors();
        var m = new List<long> { rank, axis, data.Shape[axis], gather ? data.Offset : x[2].Offset, idx.Offset };
        m.AddRange(idx.Shape.Select(v => (long)v));
        Realised o;
        CudaKernel kernel;
        Realised source;
        if (gather)
        {
            o = Allocate(node.DType, node.Shape);
            m.AddRange(data.Strides); m.AddRange(idx.Strides);
            kernel = Kernel($"gather_{data.DType}_{idx.DType}_{opCode}", name => CudaIndexCodegen.Gather(name, data.DType, idx.DType, opCode));
            source = data;
        }
        else
        {
            o = Copy(data);   // a fresh dense copy of the base, accumulated into
            m.AddRange(o.Strides); m.AddRange(idx.Strides); m.AddRange(x[2].Strides);
            kernel = Kernel($"scatter_add_{data.DType}_{idx.DType}_{opCode}", name => CudaIndexCodegen.ScatterAdd(name, data.DType, idx.DType, opCode));
            source = x[2];
        }
        long n = idx.Numel;
        var meta = MetaBuffer("i:" + string.Join(",", m), [.. m]);
        _indexChecks = true;
        if (n > 0)
        {
            kernel.Launch((int)Math.Min((n + Threads - 1) / Threads, 65535L * 8), Threads, 0, _current,
                KernelArg.Pointer(Ptr(o)), n, KernelArg.Pointer(meta.Pointer), KernelArg.Pointer(Ptr(source)), KernelArg.Pointer(Ptr(idx)),
                KernelArg.Pointer(err.Pointer));
            Interlocked.Increment(ref Launches);
        }
        return o;
    }

    private bool _indexChecks;   // set once an index kernel has run: downloads then look at the error word

    /// <summary>After a synchronising copy: throws (once) for an out-of-range index a kernel recorded.</summary>
    private void ThrowPendingIndexError()
    {
        if (!_indexChecks || _indexErrors is null) return;
        var e = new long[4];
        _indexErrors.CopyTo<long>(e);
        if (e[0] == 0) return;
        _indexErrors.Fill(0);
        if (e[3] == 4)
            throw new ArgumentOutOfRangeException("valid", $"attention on {_device}: {e[1]} valid keys given for {e[2]} key slots (at least the query count, at most the slots) " +
                "(found by a kernel queued before this read; the values computed from it are not valid)");
        string op = e[3] switch { 0 => "gather", 1 => "scatter_add", 2 => "index_select", _ => "index_add" };
        throw new IndexOutOfRangeException($"{op} on {_device}: index {e[1]} is out of range for an axis of size {e[2]} " +
            "(found by a kernel queued before this read; the values computed from it are not valid)");
    }
}
