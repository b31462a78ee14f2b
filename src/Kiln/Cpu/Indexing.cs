// Index-driven kernels on dense data seen as (outer, axis, inner): gather, index_select and their adjoints
// index_add and scatter_add. Every index is bounds-checked with a message naming op, index and axis size.
using System.Numerics;
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class Indexing
{
    public static long[] Indices(Realised idx, string op, int axisSize)
    {
        var dense = Convert.Cast(idx, DType.Int64);
        var r = dense.Span<long>().ToArray();
        Strided.Done(dense, idx);
        foreach (long i in r)
            if (i < 0 || i >= axisSize)
                throw new IndexOutOfRangeException($"{op}: index {i} is out of range for an axis of size {axisSize}");
        return r;
    }

    private static (long Outer, int Axis, long Inner) Split(int[] shape, int axis) =>
        (Shapes.Numel(shape.AsSpan(0, axis)), shape[axis], Shapes.Numel(shape.AsSpan(axis + 1)));

    /// <summary>out[o, j, i] = x[o, idx[j], i]; idx is 1-D.</summary>
    public static Realised IndexSelect(Realised x, Realised idx, int axis, int[] outShape) => x.DType switch
    {
        DType.Float32 => IndexSelect<float>(x, idx, axis, outShape),
        DType.Float64 => IndexSelect<double>(x, idx, axis, outShape),
        DType.Int32 => IndexSelect<int>(x, idx, axis, outShape),
        DType.Int64 => IndexSelect<long>(x, idx, axis, outShape),
        DType.Bool => IndexSelect<bool>(x, idx, axis, outShape),
        _ => throw new NotSupportedException($"index_select: dtype {x.DType.ShortName()}"),
    };

    private static Realised IndexSelect<T>(Realised input, Realised idx, int axis, int[] outShape)
    {
        var x = Strided.Contiguous(input);
        var ids = Indices(idx, "index_select", x.Shape[axis]);
        var (outer, n, inner) = Split(x.Shape, axis);
        var o = Realised.Contiguous(BufferPool.Rent(x.DType, Shapes.Numel(outShape)), outShape);
        // Each (outer, id) row is its own copy: rows split across threads (an embedding lookup of many tokens).
        Par.For(outer * ids.Length, Par.ThreadsFor(outer * ids.Length * inner), (r0, r1) =>
        {
            var src = x.Span<T>(); var dst = o.Span<T>();
            for (long r = r0; r < r1; r++)
            {
                long a = r / ids.Length; int j = (int)(r % ids.Length);
                src.Slice((int)((a * n + ids[j]) * inner), (int)inner).CopyTo(dst.Slice((int)(r * inner), (int)inner));
            }
        });
        Strided.Done(x, input);   // the dense copy of a strided input goes back to the pool
        return o;
    }

    /// <summary>out = base; out[o, idx[j], i] += src[o, j, i].</summary>
    public static Realised IndexAdd(Realised b, Realised idx, Realised src, int axis) => b.DType switch
    {
        DType.Float32 => IndexAdd<float>(b, idx, src, axis),
        DType.Float64 => IndexAdd<double>(b, idx, src, axis),
        DType.Int32 => IndexAdd<int>(b, idx, src, axis),
        DType.Int64 => IndexAdd<long>(b, idx, src, axis),
        _ => throw new NotSupportedException($"index_add: dtype {b.DType.ShortName()}"),
    };

    private static Realised IndexAdd<T>(Realised b, Realised idx, Realised source, int axis) where T : INumber<T>
    {
        var ids = Indices(idx, "index_add", b.Shape[axis]);
        var o = Copy(b);
        var s = Strided.Contiguous(source);
        var (outer, n, inner) = Split(b.Shape, axis);
        // Repeated ids add into the same row, so threads split what never collides: the outer index and column
        // ranges of the rows; each element still receives its j's in ascending order (same bits on any thread count).
        const long columnsPerPiece = 1024;
        long pieces = (inner + columnsPerPiece - 1) / columnsPerPiece;
        Par.For(outer * pieces, Par.ThreadsFor(outer * ids.Length * inner), (p0, p1) =>
        {
            var src = s.Span<T>(); var dst = o.Span<T>();
            for (long p = p0; p < p1; p++)
            {
                long a = p / pieces, c0 = p % pieces * columnsPerPiece;
                int width = (int)Math.Min(columnsPerPiece, inner - c0);
                for (int j = 0; j < ids.Length; j++)
                {
                    var d = dst.Slice((int)((a * n + ids[j]) * inner + c0), width);
                    var r = src.Slice((int)((a * ids.Length + j) * inner + c0), width);
                    for (int i = 0; i < d.Length; i++) d[i] += r[i];
                }
            }
        });
        Strided.Done(s, source);
        return o;
    }

    /// <summary>torch.gather: out[..., j, ...] = x[..., idx[..., j, ...], ...] along axis; out has idx's shape.</summary>
    public static Realised Gather(Realised x, Realised idx, int axis) => x.DType switch
    {
        DType.Float32 => Gather<float>(x, idx, axis),
        DType.Float64 => Gather<double>(x, idx, axis),
        DType.Int32 => Gather<int>(x, idx, axis),
        DType.Int64 => Gather<long>(x, idx, axis),
        _ => throw new NotSupportedException($"gather: dtype {x.DType.ShortName()}"),
    };

    private static Realised Gather<T>(Realised x, Realised idx, int axis)
    {
        var ids = Indices(idx, "gather", x.Shape[axis]);
        var o = Realised.Contiguous(BufferPool.Rent(x.DType, ids.Length), idx.Shape);
        var dst = o.Span<T>(); var src = x.Buffer.Span<T>();
        var pos = new int[idx.Shape.Length];
        for (long e = 0; e < ids.Length; e++)
        {
            long off = x.Offset;
            for (int d = 0; d < pos.Length; d++) off += (d == axis ? ids[e] : pos[d]) * x.Strides[d];
            dst[(int)e] = src[(int)off];
            Increment(pos, idx.Shape);
        }
        return o;
    }

    /// <summary>torch.scatter_add: out = base; out[..., idx[p], ...] += src[p] for every position p of idx.</summary>
    public static Realised ScatterAdd(Realised b, Realised idx, Realised src, int axis) => b.DType switch
    {
        DType.Float32 => ScatterAdd<float>(b, idx, src, axis),
        DType.Float64 => ScatterAdd<double>(b, idx, src, axis),
        DType.Int32 => ScatterAdd<int>(b, idx, src, axis),
        DType.Int64 => ScatterAdd<long>(b, idx, src, axis),
        _ => throw new NotSupportedException($"scatter_add: dtype {b.DType.ShortName()}"),
    };

    private static Realised ScatterAdd<T>(Realised b, Realised idx, Realised s, int axis) where T : INumber<T>
    {
        var ids = Indices(idx, "scatter_add", b.Shape[axis]);
        var o = Copy(b);
        var dst = o.Span<T>(); var src = s.Buffer.Span<T>();
        var ost = o.Strides;
        var pos = new int[idx.Shape.Length];
        for (long e = 0; e < ids.Length; e++)
        {
            long to = 0, from = s.Offset;
            for (int d = 0; d < pos.Length; d++) { to += (d == axis ? ids[e] : pos[d]) * ost[d]; from += pos[d] * s.Strides[d]; }
            dst[(int)to] += src[(int)from];
            Increment(pos, idx.Shape);
        }
        return o;
    }

    private static void Increment(int[] pos, int[] shape)
    {
        for (int d = pos.Length - 1; d >= 0; d--)
        {
            if (++pos[d] < shape[d]) return;
            pos[d] = 0;
        }
    }

    /// <summary>A fresh dense copy (never aliasing the input, since the caller writes into it).</summary>
    public static Realised Copy(Realised x)
    {
        var o = Realised.Contiguous(BufferPool.Rent(x.DType, x.Numel), x.Shape);
        switch (x.DType)
        {
            case DType.Float32: Strided.CopyTo(x, o.Span<float>()); break;
            case DType.Float64: Strided.CopyTo(x, o.Span<double>()); break;
            case DType.Int32: Strided.CopyTo(x, o.Span<int>()); break;
            case DType.Int64: Strided.CopyTo(x, o.Span<long>()); break;
            case DType.Bool: Strided.CopyTo(x, o.Span<bool>()); break;
            case DType.BFloat16: Strided.CopyTo(x, o.Span<BFloat16>()); break;
            case DType.Float16: Strided.CopyTo(x, o.Span<Half>()); break;
        }
        return o;
    }
}
