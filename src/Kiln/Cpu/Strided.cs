// Strided iteration: walks an N-d view as rows of its (coalesced) innermost axis, so kernels can run span
// operations on rows instead of computing an index per element. Broadcast axes have stride 0.
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class Strided
{
    /// <summary>
    /// Merges adjacent axes that are contiguous with each other in every operand, drops size-1 axes.
    /// Returns the reduced shape and per-operand strides (at least one axis).
    /// </summary>
    public static (int[] Shape, long[][] Strides) Coalesce(int[] shape, params long[][] strides)
    {
        var dims = new List<int>();
        var st = strides.Select(_ => new List<long>()).ToArray();
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 1) continue;
            if (dims.Count > 0)
            {
                bool merge = true;
                for (int k = 0; k < strides.Length; k++)
                    if (st[k][^1] != strides[k][d] * shape[d]) { merge = false; break; }
                if (merge)
                {
                    dims[^1] *= shape[d];
                    for (int k = 0; k < strides.Length; k++) st[k][^1] = strides[k][d];
                    continue;
                }
            }
            dims.Add(shape[d]);
            for (int k = 0; k < strides.Length; k++) st[k].Add(strides[k][d]);
        }
        if (dims.Count == 0) { dims.Add(1); foreach (var s in st) s.Add(0); }
        return (dims.ToArray(), st.Select(s => s.ToArray()).ToArray());
    }

    /// <summary>Strides of <paramref name="v"/> seen through a broadcast to <paramref name="outShape"/>.</summary>
    public static long[] BroadcastStrides(Realised v, int[] outShape)
    {
        var r = new long[outShape.Length];
        int off = outShape.Length - v.Shape.Length;
        for (int i = 0; i < v.Shape.Length; i++)
            r[off + i] = v.Shape[i] == 1 && outShape[off + i] != 1 ? 0 : v.Strides[i];
        return r;
    }

    /// <summary>Offset (in elements) of row <paramref name="row"/> given the outer axes of a coalesced shape.</summary>
    public static long RowOffset(long row, int[] shape, long[] strides)
    {
        long off = 0;
        for (int d = shape.Length - 2; d >= 0; d--)
        {
            long idx = row % shape[d];
            row /= shape[d];
            off += idx * strides[d];
        }
        return off;
    }

    /// <summary>Copies any view into a dense row-major span.</summary>
    public static void CopyTo<T>(Realised src, Span<T> dst)
    {
        var data = src.Buffer.Span<T>();
        if (src.IsContiguous) { data.Slice((int)src.Offset, dst.Length).CopyTo(dst); return; }
        var (shape, st) = Coalesce(src.Shape, src.Strides);
        var s = st[0];
        int inner = shape[^1];
        long innerStride = s[^1];
        long rows = dst.Length / Math.Max(inner, 1);
        for (long r = 0; r < rows; r++)
        {
            long off = src.Offset + RowOffset(r, shape, s);
            var o = dst.Slice((int)(r * inner), inner);
            if (innerStride == 1) data.Slice((int)off, inner).CopyTo(o);
            else if (innerStride == 0) o.Fill(data[(int)off]);
            else for (int i = 0; i < inner; i++) o[i] = data[(int)(off + i * innerStride)];
        }
    }

    /// <summary>
    /// Ends a kernel's use of <paramref name="temp"/>, a view or dense copy it made of <paramref name="source"/>:
    /// the buffer's user count drops (a copy goes back to the pool). Nothing happens when temp is source.
    /// </summary>
    public static void Done(Realised temp, Realised source)
    {
        if (!ReferenceEquals(temp, source)) Runtime.Evaluator.Release(temp);
    }

    /// <summary>A dense copy of a view (or the view itself when it already is dense).</summary>
    public static Realised Contiguous(Realised v)
    {
        if (v.IsContiguous) return v;
        var b = BufferPool.Rent(v.DType, v.Numel);
        switch (v.DType)
        {
            case DType.Float32: CopyTo(v, b.Span<float>()); break;
            case DType.Float64: CopyTo(v, b.Span<double>()); break;
            case DType.BFloat16: CopyTo(v, b.Span<BFloat16>()); break;
            case DType.Float16: CopyTo(v, b.Span<Half>()); break;
            case DType.Int32: CopyTo(v, b.Span<int>()); break;
            case DType.Int64: CopyTo(v, b.Span<long>()); break;
            case DType.Bool: CopyTo(v, b.Span<bool>()); break;
        }
        return Realised.Contiguous(b, v.Shape);
    }
}
