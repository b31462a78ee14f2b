// Elementwise kernels: unary maps over dense spans and the broadcasting binary/ternary engine.
// Rows of the coalesced output are handed to span operators (TensorPrimitives underneath), so the
// per-element cost is that of the vectorized loop, not of index arithmetic.
using System.Numerics;
using Kiln.Runtime;

namespace Kiln.Cpu;

internal delegate void SpanMap<T>(ReadOnlySpan<T> x, Span<T> y);

/// <summary>A binary operator over row shapes: vector-vector, vector-scalar and scalar-vector.</summary>
internal interface IBinaryRow<T, TOut>
{
    static abstract void VV(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<TOut> o);
    static abstract void VS(ReadOnlySpan<T> a, T b, Span<TOut> o);
    static abstract void SV(T a, ReadOnlySpan<T> b, Span<TOut> o);
}

internal static class Elementwise
{
    /// <summary>y = f(x) for a float op, computed in the node's compute type, chunked across threads.</summary>
    public static Realised Unary(Realised input, SpanMap<float> f32, SpanMap<double> f64)
    {
        var x = Strided.Contiguous(input);
        var b = BufferPool.Rent(x.DType, x.Numel);
        var o = Realised.Contiguous(b, x.Shape);
        long n = x.Numel;
        int threads = Par.ThreadsFor(n);
        if (n > 0)   // some span maps (TensorPrimitives.Sigmoid) reject empty spans
            switch (x.DType)
            {
                case DType.Float32: Par.For(n, threads, (s, e) => f32(x.Span<float>()[(int)s..(int)e], o.Span<float>()[(int)s..(int)e])); break;
                case DType.Float64: Par.For(n, threads, (s, e) => f64(x.Span<double>()[(int)s..(int)e], o.Span<double>()[(int)s..(int)e])); break;
                default: throw new NotSupportedException($"unary kernel: dtype {x.DType.ShortName()}");
            }
        Strided.Done(x, input);
        return o;
    }

    public static Realised Binary<T, TOut, TOp>(Realised a, Realised b, int[] outShape, DType outType)
        where TOp : IBinaryRow<T, TOut>
    {
        var buf = BufferPool.Rent(outType, Shapes.Numel(outShape));
        var o = Realised.Contiguous(buf, outShape);
        long n = o.Numel;
        if (n == 0) return o;
        var (shape, st) = Strided.Coalesce(outShape, Strided.BroadcastStrides(a, outShape), Strided.BroadcastStrides(b, outShape));
        long[] sa = st[0], sb = st[1];
        int inner = shape[^1];
        long rows = n / inner;
        long ia = sa[^1], ib = sb[^1];
        // Split long single rows too: chunks of one row are still contiguous or scalar in each operand.
        int perRow = rows == 1 ? Par.ThreadsFor(inner) : 1;
        long tasks = rows * perRow;
        Par.For(tasks, Par.ThreadsFor(n), (t0, t1) =>
        {
            var A = a.Buffer.Span<T>(); var B = b.Buffer.Span<T>(); var O = buf.Span<TOut>();
            T[]? ta = null, tb = null;
            for (long t = t0; t < t1; t++)
            {
                long r = t / perRow; int c = (int)(t % perRow);
                int s = (int)((long)inner * c / perRow), e = (int)((long)inner * (c + 1) / perRow), len = e - s;
                long offA = a.Offset + Strided.RowOffset(r, shape, sa) + s * ia;
                long offB = b.Offset + Strided.RowOffset(r, shape, sb) + s * ib;
                var orow = O.Slice((int)(r * inner + s), len);
                if (ia == 0 && ib == 0) { TOp.VS(A.Slice((int)offA, 1), B[(int)offB], orow[..1]); orow.Fill(orow[0]); continue; }
                ReadOnlySpan<T> ra = ia switch { 1 => A.Slice((int)offA, len), 0 => default, _ => Gather(A, offA, ia, len, ref ta) };
                ReadOnlySpan<T> rb = ib switch { 1 => B.Slice((int)offB, len), 0 => default, _ => Gather(B, offB, ib, len, ref tb) };
                if (ia == 0) TOp.SV(A[(int)offA], rb, orow);
                else if (ib == 0) TOp.VS(ra, B[(int)offB], orow);
                else TOp.VV(ra, rb, orow);
            }
        });
        return o;
    }

    private static ReadOnlySpan<T> Gather<T>(Span<T> src, long off, long stride, int len, ref T[]? tmp)
    {
        if (tmp is null || tmp.Length < len) tmp = new T[len];
        for (int i = 0; i < len; i++) tmp[i] = src[(int)(off + i * stride)];
        return tmp.AsSpan(0, len);
    }

    /// <summary>where(cond, a, b) with broadcasting of all three.</summary>
    public static Realised Where<T>(Realised c, Realised a, Realised b, int[] outShape, DType outType)
    {
        var buf = BufferPool.Rent(outType, Shapes.Numel(outShape));
        var o = Realised.Contiguous(buf, outShape);
        if (o.Numel == 0) return o;
        var (shape, st) = Strided.Coalesce(outShape, Strided.BroadcastStrides(c, outShape),
            Strided.BroadcastStrides(a, outShape), Strided.BroadcastStrides(b, outShape));
        int inner = shape[^1];
        long rows = o.Numel / inner;
        var C = c.Buffer.Span<bool>(); var A = a.Buffer.Span<T>(); var B = b.Buffer.Span<T>(); var O = buf.Span<T>();
        for (long r = 0; r < rows; r++)
        {
            long oc = c.Offset + Strided.RowOffset(r, shape, st[0]);
            long oa = a.Offset + Strided.RowOffset(r, shape, st[1]);
            long ob = b.Offset + Strided.RowOffset(r, shape, st[2]);
            for (int i = 0; i < inner; i++)
                O[(int)(r * inner + i)] = C[(int)(oc + i * st[0][^1])] ? A[(int)(oa + i * st[1][^1])] : B[(int)(ob + i * st[2][^1])];
        }
        return o;
    }
}
