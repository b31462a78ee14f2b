// Reductions over any set of axes: the reduced axes are moved last (a view, copied only if needed), then
// each output element reduces one contiguous row. Sums are pairwise over vectorized blocks of 1024.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Kiln.Runtime;

namespace Kiln.Cpu;

internal enum ReduceKind { Sum, Mean, Max, Min, LogSumExp, Var, ArgMax, ArgMin }

internal static class Reduce
{
    /// <summary>View of <paramref name="x"/> with <paramref name="axes"/> moved to the end, made dense.</summary>
    public static (Realised Rows, long Outer, int Inner) AxesLast(Realised x, int[] axes)
    {
        int rank = x.Shape.Length;
        var perm = Enumerable.Range(0, rank).Where(a => !axes.Contains(a)).Concat(axes).ToArray();
        var view = Views.Permute(x, perm);
        var v = Strided.Contiguous(view);
        Strided.Done(view, v);   // the copy (if any) is all the caller reads
        long inner = 1;
        foreach (int a in axes) inner *= x.Shape[a];
        long outer = inner == 0 ? Shapes.Numel(perm.Take(rank - axes.Length).Select(a => x.Shape[a]).ToArray()) : x.Numel / inner;
        return (v, outer, (int)inner);   // the caller ends it with Strided.Done(rows, x)
    }

    public static Realised Run(Realised x, int[] axes, int[] outShape, ReduceKind kind, int correction = 0)
    {
        // Some axes (not all, not the last alone): summed row by row, no transposing copy; the same code as fused_reduce.
        if (kind is ReduceKind.Sum or ReduceKind.Mean && x.DType is DType.Float32 or DType.Float64 && GroupedSum.Applies(x.Shape.Length, axes)
            && x.Shape[^1] > 0 && x.Numel > 0)
            return Grouped(x, axes, outShape, kind == ReduceKind.Mean);
        var (rows, outer, inner) = AxesLast(x, axes);
        bool arg = kind is ReduceKind.ArgMax or ReduceKind.ArgMin;
        var outType = arg ? DType.Int64 : x.DType;
        var o = Realised.Contiguous(BufferPool.Rent(outType, outer), outShape);
        int threads = Par.ThreadsFor(outer * (long)inner);
        switch (x.DType)
        {
            case DType.Float32: Par.For(outer, threads, (s, e) => Rows<float>(rows, o, s, e, inner, kind, correction)); break;
            case DType.Float64: Par.For(outer, threads, (s, e) => Rows<double>(rows, o, s, e, inner, kind, correction)); break;
            case DType.Int32 when kind is ReduceKind.Sum or ReduceKind.Max or ReduceKind.Min or ReduceKind.ArgMax or ReduceKind.ArgMin:
                IntRows<int>(rows, o, outer, inner, kind); break;
            case DType.Int64 when kind is ReduceKind.Sum or ReduceKind.Max or ReduceKind.Min or ReduceKind.ArgMax or ReduceKind.ArgMin:
                IntRows<long>(rows, o, outer, inner, kind); break;
            default: throw new NotSupportedException($"reduction {kind}: dtype {x.DType.ShortName()} has no CPU kernel");
        }
        Strided.Done(rows, x);
        return o;
    }

    private static void IntRows<T>(Realised rows, Realised o, long outer, int inner, ReduceKind kind) where T : unmanaged, INumber<T>
    {
        var src = rows.Span<T>();
        for (long r = 0; r < outer; r++)
        {
            var row = src.Slice((int)(r * inner), inner);
            switch (kind)
            {
                case ReduceKind.Sum: o.Span<T>()[(int)r] = TensorPrimitives.Sum<T>(row); break;
                case ReduceKind.Max: o.Span<T>()[(int)r] = TensorPrimitives.Max<T>(row); break;
                case ReduceKind.Min: o.Span<T>()[(int)r] = TensorPrimitives.Min<T>(row); break;
                default:
                {
                    int best = 0;
                    for (int i = 1; i < row.Length; i++)
                        if (kind == ReduceKind.ArgMax ? row[i] > row[best] : row[i] < row[best]) best = i;
                    o.Span<long>()[(int)r] = best;
                    break;
                }
            }
        }
    }

    private static void Rows<T>(Realised rows, Realised o, long start, long end, int inner, ReduceKind kind, int correction)
        where T : unmanaged, IFloatingPointIeee754<T>, IExponentialFunctions<T>
    {
        var src = rows.Span<T>();
        T[]? tmp = kind == ReduceKind.LogSumExp || kind == ReduceKind.Var ? new T[inner] : null;
        for (long r = start; r < end; r++)
        {
            var row = src.Slice((int)(r * inner), inner);
            switch (kind)
            {
                case ReduceKind.Sum: o.Span<T>()[(int)r] = PairwiseSum(row); break;
                case ReduceKind.Mean: o.Span<T>()[(int)r] = PairwiseSum(row) / T.CreateChecked(inner); break;
                case ReduceKind.Max: o.Span<T>()[(int)r] = TensorPrimitives.Max(row); break;
                case ReduceKind.Min: o.Span<T>()[(int)r] = TensorPrimitives.Min(row); break;
                case ReduceKind.LogSumExp: o.Span<T>()[(int)r] = LogSumExp(row, tmp!); break;
                case ReduceKind.Var:
                {
                    T mean = PairwiseSum(row) / T.CreateChecked(inner);
                    TensorPrimitives.Subtract(row, mean, tmp.AsSpan(0, inner));
                    T ss = TensorPrimitives.SumOfSquares<T>(tmp.AsSpan(0, inner));
                    o.Span<T>()[(int)r] = ss / T.CreateChecked(Math.Max(inner - correction, 0));
                    break;
                }
                case ReduceKind.ArgMax: o.Span<long>()[(int)r] = ArgBest(row, max: true); break;
                case ReduceKind.ArgMin: o.Span<long>()[(int)r] = ArgBest(row, max: false); break;
            }
        }
    }

    private static Realised Grouped(Realised x, int[] axes, int[] outShape, bool mean)
    {
        var dense = Strided.Contiguous(x);
        int width = x.Shape[^1];
        var o = x.DType == DType.Float32
            ? GroupedSum.Run<float>(x.Shape, axes, mean, outShape, x.DType, 0, 1, (row, _) => dense.Span<float>().Slice((int)(row * width), width))
            : GroupedSum.Run<double>(x.Shape, axes, mean, outShape, x.DType, 0, 1, (row, _) => dense.Span<double>().Slice((int)(row * width), width));
        Strided.Done(dense, x);
        return o;
    }

    /// <summary>Index of the first maximum (minimum); NaN counts as the extreme, as in PyTorch.</summary>
    private static long ArgBest<T>(ReadOnlySpan<T> row, bool max) where T : IFloatingPointIeee754<T>
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++)
        {
            if (T.IsNaN(row[best])) break;
            if (T.IsNaN(row[i]) || (max ? row[i] > row[best] : row[i] < row[best])) best = i;
        }
        return best;
    }

    public static T PairwiseSum<T>(ReadOnlySpan<T> x) where T : IFloatingPointIeee754<T>
    {
        if (x.Length <= 1024) return TensorPrimitives.Sum(x);
        int h = (x.Length / 2 + 1023) & ~1023;
        return PairwiseSum(x[..h]) + PairwiseSum(x[h..]);
    }

    public static T LogSumExp<T>(ReadOnlySpan<T> row, Span<T> tmp) where T : unmanaged, IFloatingPointIeee754<T>, IExponentialFunctions<T>
    {
        if (row.Length == 0) return T.NegativeInfinity;
        T m = TensorPrimitives.Max(row);
        if (T.IsInfinity(m)) return m;   // all -inf → -inf; any +inf → +inf
        tmp = tmp[..row.Length];
        if (typeof(T) == typeof(float))
        {
            float s = FastExp.ExpShiftedSum(MemoryMarshal.Cast<T, float>(row), float.CreateTruncating(m), MemoryMarshal.Cast<T, float>(tmp));
            return m + T.CreateTruncating(MathF.Log(s));
        }
        TensorPrimitives.Subtract(row, m, tmp);
        TensorPrimitives.Exp(tmp, tmp);
        return m + T.Log(PairwiseSum<T>(tmp));
    }
}
