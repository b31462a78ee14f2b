// Kernels that move data between layouts: concat along an axis, constant padding, triangular fill.
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class LayoutKernels
{
    public static Realised Concat(Realised[] xs, int axis, int[] outShape)
    {
        var o = Realised.Contiguous(BufferPool.Rent(xs[0].DType, Shapes.Numel(outShape)), outShape);
        long outer = Shapes.Numel(outShape.AsSpan(0, axis));
        long inner = Shapes.Numel(outShape.AsSpan(axis + 1));
        long rowOut = outShape[axis] * inner;
        long at = 0;
        foreach (var x in xs)
        {
            var d = Strided.Contiguous(x);
            long rowIn = x.Shape[axis] * inner;
            CopyRows(d, o, outer, rowIn, rowOut, at);
            Strided.Done(d, x);
            at += rowIn;
        }
        return o;
    }

    private static void CopyRows(Realised src, Realised dst, long outer, long rowIn, long rowOut, long at)
    {
        switch (src.DType)
        {
            case DType.Float32: Rows(src.Span<float>(), dst.Span<float>(), outer, rowIn, rowOut, at); break;
            case DType.Float64: Rows(src.Span<double>(), dst.Span<double>(), outer, rowIn, rowOut, at); break;
            case DType.BFloat16: Rows(src.Span<BFloat16>(), dst.Span<BFloat16>(), outer, rowIn, rowOut, at); break;
            case DType.Float16: Rows(src.Span<Half>(), dst.Span<Half>(), outer, rowIn, rowOut, at); break;
            case DType.Int32: Rows(src.Span<int>(), dst.Span<int>(), outer, rowIn, rowOut, at); break;
            case DType.Int64: Rows(src.Span<long>(), dst.Span<long>(), outer, rowIn, rowOut, at); break;
            case DType.Bool: Rows(src.Span<bool>(), dst.Span<bool>(), outer, rowIn, rowOut, at); break;
        }
    }

    private static void Rows<T>(Span<T> s, Span<T> d, long outer, long rowIn, long rowOut, long at)
    {
        for (long r = 0; r < outer; r++)
            s.Slice((int)(r * rowIn), (int)rowIn).CopyTo(d.Slice((int)(r * rowOut + at), (int)rowIn));
    }

    /// <summary>Constant padding: the output is filled with the value, then x is copied into its window.</summary>
    public static Realised Pad(Realised x, int[] before, int[] outShape, double value)
    {
        var o = Realised.Contiguous(BufferPool.Rent(x.DType, Shapes.Numel(outShape)), outShape);
        long offset = 0;
        for (int d = 0; d < before.Length; d++) offset += before[d] * o.Strides[d];
        var window = new Realised(o.Buffer, offset, x.Shape, o.Strides);
        switch (x.DType)
        {
            case DType.Float32: o.Span<float>().Fill((float)value); CopyInto<float>(x, window); break;
            case DType.Float64: o.Span<double>().Fill(value); CopyInto<double>(x, window); break;
            case DType.Int32: o.Span<int>().Fill((int)value); CopyInto<int>(x, window); break;
            case DType.Int64: o.Span<long>().Fill((long)value); CopyInto<long>(x, window); break;
            default: throw new NotSupportedException($"pad: dtype {x.DType.ShortName()}");
        }
        Runtime.Evaluator.Release(window);   // o keeps the buffer
        return o;
    }

    /// <summary>Writes dense-or-strided <paramref name="src"/> into the strided window <paramref name="dst"/>.</summary>
    private static void CopyInto<T>(Realised src, Realised dst)
    {
        var denseValue = Strided.Contiguous(src);
        var dense = denseValue.Span<T>();
        var d = dst.Buffer.Span<T>();
        var pos = new int[dst.Shape.Length];
        for (int e = 0; e < dense.Length; e++)
        {
            long off = dst.Offset;
            for (int k = 0; k < pos.Length; k++) off += pos[k] * dst.Strides[k];
            d[(int)off] = dense[e];
            for (int k = pos.Length - 1; k >= 0; k--) { if (++pos[k] < dst.Shape[k]) break; pos[k] = 0; }
        }
        Strided.Done(denseValue, src);
    }

    /// <summary>Keeps x where col ≤ row + k (lower) or col ≥ row + k (upper) over the last two axes; fills the rest.</summary>
    public static Realised Triangle(Realised x, bool lower, int k, double fill)
    {
        var o = Indexing.Copy(x);
        int rows = x.Shape[^2], cols = x.Shape[^1];
        long mats = rows * cols == 0 ? 0 : o.Numel / ((long)rows * cols);
        if (o.DType == DType.Float32) FillOutside(o.Span<float>(), mats, rows, cols, lower, k, (float)fill);
        else if (o.DType == DType.Float64) FillOutside(o.Span<double>(), mats, rows, cols, lower, k, fill);
        else throw new NotSupportedException($"triangle: dtype {o.DType.ShortName()}");
        return o;
    }

    /// <summary>Per row, the kept columns are one contiguous run; the rest is filled with a span fill.</summary>
    private static void FillOutside<T>(Span<T> o, long mats, int rows, int cols, bool lower, int k, T fill)
    {
        for (long m = 0; m < mats; m++)
            for (int i = 0; i < rows; i++)
            {
                var row = o.Slice((int)((m * rows + i) * cols), cols);
                int edge = (int)Math.Clamp((long)i + k, -1, cols);   // lower keeps j <= i+k, upper keeps j >= i+k
                if (lower) row[Math.Clamp(edge + 1, 0, cols)..].Fill(fill);
                else row[..Math.Clamp(edge, 0, cols)].Fill(fill);
            }
    }
}
