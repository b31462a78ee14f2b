// Sums and means over some axes — not all of them and not the last one alone, which have their own kernels:
// leading or middle axes with the last kept (a broadcast weight's gradient, (g·x).sum([0, 1])), or the last axis
// together with others. One definition shared by the plain reduction and by fused_reduce, so a sum taken from a
// materialised tensor and one taken inside a fused program are the same bits (which of the two a graph gets can
// depend on what another thread has already evaluated).
//
// The input is walked one row (last axis) at a time. Each output group (the kept leading axes) adds up its rows
// in order in double: element by element into the kept last axis, or each row's double sum when the last axis
// is reduced. A group's rows are split into a number of chunks that depends only on the shapes, and the chunks'
// partial sums are added in chunk order, so the result does not depend on the thread count either.
using System.Numerics;
using System.Runtime.InteropServices;
using Kiln.Runtime;

namespace Kiln.Cpu;

/// <summary>The <paramref name="row"/>-th row (last axis) of the values being reduced, computed or read into <paramref name="scratch"/> if needed.</summary>
internal delegate ReadOnlySpan<T> RowValues<T>(long row, T[] scratch);

internal static class GroupedSum
{
    /// <summary>Whether this path applies: some axes reduced, but not all and not the last alone.</summary>
    public static bool Applies(int rank, int[] axes) =>
        axes.Length > 0 && axes.Length < rank && !(axes.Length == 1 && axes[0] == rank - 1);

    public static Realised Run<T>(int[] shape, int[] axes, bool mean, int[] outShape, DType dtype, int scratchLength, long costPerElement, RowValues<T> rowValues)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int rank = shape.Length, width = shape[^1];
        bool lastReduced = axes.Contains(rank - 1);
        int blockOut = lastReduced ? 1 : width;   // what one row adds to its group: its sum, or itself
        var reduced = axes.Where(d => d < rank - 1).Order().ToArray();
        var kept = Enumerable.Range(0, rank - 1).Where(d => !reduced.Contains(d)).ToArray();
        var rowStrides = Shapes.ContiguousStrides(shape[..^1]);
        long groups = 1, perGroup = 1;
        foreach (int d in kept) groups *= shape[d];
        foreach (int d in reduced) perGroup *= shape[d];
        long outputs = groups * blockOut;
        // At most 64 chunks of at least 64 rows, the partial sums within ~64 MiB.
        long chunks = Math.Clamp(Math.Min(perGroup / 64, (8L << 20) / Math.Max(outputs, 1)), 1, 64);
        long chunkRows = (perGroup + chunks - 1) / chunks;
        var partial = new double[groups * chunks * blockOut];
        Par.For(groups * chunks, Par.ThreadsFor(groups * perGroup * width * costPerElement, 1 << 15), (t0, t1) =>
        {
            var scratch = new T[scratchLength];
            var redIdx = new int[reduced.Length];
            for (long t = t0; t < t1; t++)
            {
                long g = t / chunks, c = t % chunks;
                long rem = g, baseRow = 0;
                for (int k = kept.Length - 1; k >= 0; k--) { baseRow += rem % shape[kept[k]] * rowStrides[kept[k]]; rem /= shape[kept[k]]; }
                long first = c * chunkRows, last = Math.Min(perGroup, first + chunkRows);
                rem = first;
                for (int k = reduced.Length - 1; k >= 0; k--) { redIdx[k] = (int)(rem % shape[reduced[k]]); rem /= shape[reduced[k]]; }
                var acc = partial.AsSpan((int)(t * blockOut), blockOut);
                for (long r = first; r < last; r++)
                {
                    long row = baseRow;
                    for (int k = 0; k < reduced.Length; k++) row += redIdx[k] * rowStrides[reduced[k]];
                    if (lastReduced) acc[0] += RowSum(rowValues(row, scratch));
                    else AddWidened(rowValues(row, scratch), acc);
                    for (int k = reduced.Length - 1; k >= 0 && ++redIdx[k] == shape[reduced[k]]; k--) redIdx[k] = 0;   // odometer
                }
            }
        });
        var o = Realised.Contiguous(BufferPool.Rent(dtype, Math.Max(outputs, 1)), outShape);
        var dst = o.Span<T>();
        long count = perGroup * (lastReduced ? width : 1);
        for (long g = 0; g < groups; g++)
            for (int j = 0; j < blockOut; j++)
            {
                double total = 0;
                for (long c = 0; c < chunks; c++) total += partial[(g * chunks + c) * blockOut + j];
                dst[(int)(g * blockOut + j)] = T.CreateTruncating(mean ? total / count : total);
            }
        return o;
    }

    /// <summary>Σ values in double: vector-widened partial sums (lo and hi halves, summed at the end) then the tail.</summary>
    private static double RowSum<T>(ReadOnlySpan<T> values) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double tail = 0;
        int i = 0;
        if (typeof(T) == typeof(float) && Vector.IsHardwareAccelerated)
        {
            var src = MemoryMarshal.Cast<T, float>(values);
            Vector<double> lo = Vector<double>.Zero, hi = Vector<double>.Zero;
            for (; i + Vector<float>.Count <= src.Length; i += Vector<float>.Count)
            {
                Vector.Widen(new Vector<float>(src[i..]), out var l, out var h);
                lo += l; hi += h;
            }
            tail = Vector.Sum(lo + hi);
        }
        for (; i < values.Length; i++) tail += double.CreateTruncating(values[i]);
        return tail;
    }

    /// <summary>acc[j] += (double)values[j], vectorized (each element gets exactly the scalar loop's operation).</summary>
    private static void AddWidened<T>(ReadOnlySpan<T> values, Span<double> acc) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(double)) { System.Numerics.Tensors.TensorPrimitives.Add(acc, MemoryMarshal.Cast<T, double>(values), acc); return; }
        var src = MemoryMarshal.Cast<T, float>(values);
        int i = 0, n = src.Length;
        if (Vector.IsHardwareAccelerated)
            for (; i + Vector<float>.Count <= n; i += Vector<float>.Count)
            {
                Vector.Widen(new Vector<float>(src[i..]), out var lo, out var hi);
                var a = acc[i..];
                (new Vector<double>(a) + lo).CopyTo(a);
                (new Vector<double>(a[Vector<double>.Count..]) + hi).CopyTo(a[Vector<double>.Count..]);
            }
        for (; i < n; i++) acc[i] += src[i];
    }
}
