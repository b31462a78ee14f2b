// Views: new offset/strides over the same buffer, no data moved. Reshape copies only when the source
// strides cannot express the new shape (e.g. reshaping a transposed matrix).
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class Views
{
    public static Realised Permute(Realised x, int[] perm)
    {
        var shape = new int[perm.Length];
        var strides = new long[perm.Length];
        for (int i = 0; i < perm.Length; i++) { shape[i] = x.Shape[perm[i]]; strides[i] = x.Strides[perm[i]]; }
        return new Realised(x.Buffer, x.Offset, shape, strides);
    }

    public static Realised Reshape(Realised x, int[] shape)
    {
        var strides = TryViewStrides(x.Shape, x.Strides, shape);
        if (strides is not null) return new Realised(x.Buffer, x.Offset, shape, strides);
        var dense = Strided.Contiguous(x);
        var r = new Realised(dense.Buffer, dense.Offset, shape, Shapes.ContiguousStrides(shape));
        Strided.Done(dense, x);   // the reshaped view holds the copy on its own
        return r;
    }

    /// <summary>Strides for viewing (shape, strides) as newShape without a copy, or null (PyTorch's rule).</summary>
    private static long[]? TryViewStrides(int[] shape, long[] strides, int[] newShape)
    {
        if (Shapes.Numel(shape) == 0) return Shapes.ContiguousStrides(newShape);
        // Drop size-1 axes and group the rest into contiguous chunks; each new axis must fall in one chunk.
        var dims = new List<(long Size, long Stride)>();
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] == 1) continue;
            if (dims.Count > 0 && dims[^1].Stride == strides[i] * shape[i])
                dims[^1] = (dims[^1].Size * shape[i], strides[i]);
            else dims.Add((shape[i], strides[i]));
        }
        var result = new long[newShape.Length];
        int chunk = 0; long remaining = dims.Count > 0 ? dims[0].Size : 1;
        for (int i = 0; i < newShape.Length; i++)
        {
            if (newShape[i] == 1) { result[i] = 1; continue; }
            while (remaining == 1 && chunk + 1 < dims.Count) { chunk++; remaining = dims[chunk].Size; }
            if (chunk >= dims.Count || remaining % newShape[i] != 0) return null;
            remaining /= newShape[i];
            result[i] = dims[chunk].Stride * remaining;
        }
        return result;
    }

    public static Realised Slice(Realised x, int axis, int start, int stop, int step)
    {
        var shape = (int[])x.Shape.Clone();
        var strides = (long[])x.Strides.Clone();
        shape[axis] = (int)Math.Max(0, ((long)stop - start + step - 1) / step);
        strides[axis] = x.Strides[axis] * step;
        long offset = shape[axis] == 0 ? x.Offset : x.Offset + start * x.Strides[axis];
        return new Realised(x.Buffer, offset, shape, strides);
    }

    public static Realised Expand(Realised x, int[] shape)
    {
        var strides = Strided.BroadcastStrides(x, shape);
        return new Realised(x.Buffer, x.Offset, shape, strides);
    }
}
