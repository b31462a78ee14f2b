// Single-pass row kernels: softmax, log-softmax, RMSNorm, LayerNorm. Each output row is computed from one
// dense input row (the axis is moved last first when needed), rows spread across threads.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class RowKernels
{
    private delegate void RowFn<T>(ReadOnlySpan<T> x, Span<T> y, Span<T> tmp);

    /// <summary>Applies a per-row function along <paramref name="axis"/>; the result keeps x's logical layout.</summary>
    private static Realised AlongAxis(Realised input, int axis, RowFn<float> f32, RowFn<double> f64)
    {
        int rank = input.Shape.Length;
        int[]? perm = null;
        var view = input;
        if (axis != rank - 1)
        {
            perm = Enumerable.Range(0, rank).Where(a => a != axis).Append(axis).ToArray();
            view = Views.Permute(input, perm);
        }
        var x = Strided.Contiguous(view);
        var o = Realised.Contiguous(BufferPool.Rent(x.DType, x.Numel), x.Shape);
        int inner = rank == 0 ? 1 : x.Shape[^1];
        long rows = inner == 0 ? 0 : x.Numel / inner;
        int threads = Par.ThreadsFor(x.Numel, 1 << 14);
        if (x.DType == DType.Float32) Par.For(rows, threads, (s, e) => Rows(x, o, s, e, inner, f32));
        else if (x.DType == DType.Float64) Par.For(rows, threads, (s, e) => Rows(x, o, s, e, inner, f64));
        else throw new NotSupportedException($"row kernel: dtype {x.DType.ShortName()}");
        Strided.Done(x, view);
        Strided.Done(view, input);
        if (perm is null) return o;
        var inv = new int[rank];
        for (int i = 0; i < rank; i++) inv[perm[i]] = i;
        var result = Views.Permute(o, inv);
        Runtime.Evaluator.Release(o);   // the permuted view now holds the buffer on its own
        return result;
    }

    private static void Rows<T>(Realised x, Realised o, long s, long e, int inner, RowFn<T> f)
    {
        var tmp = new T[inner];
        var src = x.Span<T>(); var dst = o.Span<T>();
        for (long r = s; r < e; r++)
            f(src.Slice((int)(r * inner), inner), dst.Slice((int)(r * inner), inner), tmp);
    }

    public static Realised Softmax(Realised x, int axis) => AlongAxis(x, axis, SoftmaxRow, SoftmaxRow);
    public static Realised LogSoftmax(Realised x, int axis) => AlongAxis(x, axis, LogSoftmaxRow, LogSoftmaxRow);

    private static void SoftmaxRow<T>(ReadOnlySpan<T> x, Span<T> y, Span<T> tmp) where T : unmanaged, IFloatingPointIeee754<T>, IExponentialFunctions<T>
    {
        if (x.Length == 0) return;
        T m = TensorPrimitives.Max(x);
        if (T.IsNegativeInfinity(m)) m = T.Zero;   // fully masked row: exp(-inf) = 0 → NaN like PyTorch via 0/0
        if (typeof(T) == typeof(float))
        {
            // One fused pass for exp and its sum, then one scaling pass.
            var xf = MemoryMarshal.Cast<T, float>(x); var yf = MemoryMarshal.Cast<T, float>(y);
            float sum = FastExp.ExpShiftedSum(xf, float.CreateTruncating(m), yf);
            TensorPrimitives.Multiply(yf, 1f / sum, yf);
            return;
        }
        TensorPrimitives.Subtract(x, m, y);
        TensorPrimitives.Exp(y, y);
        TensorPrimitives.Divide(y, Reduce.PairwiseSum<T>(y), y);
    }

    private static void LogSoftmaxRow<T>(ReadOnlySpan<T> x, Span<T> y, Span<T> tmp) where T : unmanaged, IFloatingPointIeee754<T>, IExponentialFunctions<T>
    {
        if (x.Length == 0) return;
        T lse = Reduce.LogSumExp(x, tmp);
        TensorPrimitives.Subtract(x, lse, y);
    }

    /// <summary>y = x / √(mean(x²) + eps) · w over the last axis.</summary>
    public static Realised RmsNorm(Realised x, Realised w, double eps)
    {
        w = Strided.Contiguous(w);
        return x.DType == DType.Float32
            ? AlongAxis(x, x.Shape.Length - 1, (r, y, _) => RmsRow(r, y, w.Span<float>(), (float)eps), null!)
            : AlongAxis(x, x.Shape.Length - 1, null!, (r, y, _) => RmsRow(r, y, w.Span<double>(), eps));
    }

    private static void RmsRow<T>(ReadOnlySpan<T> x, Span<T> y, ReadOnlySpan<T> w, T eps) where T : IFloatingPointIeee754<T>, IRootFunctions<T>
    {
        T ms = TensorPrimitives.SumOfSquares(x) / T.CreateChecked(x.Length);
        T r = T.One / T.Sqrt(ms + eps);
        TensorPrimitives.Multiply(x, r, y);
        TensorPrimitives.Multiply(y, w, y);
    }

    /// <summary>y = (x − mean) / √(var + eps) · w + b over the last axis (biased variance).</summary>
    public static Realised LayerNorm(Realised x, Realised w, Realised b, double eps)
    {
        w = Strided.Contiguous(w); b = Strided.Contiguous(b);
        return x.DType == DType.Float32
            ? AlongAxis(x, x.Shape.Length - 1, (r, y, _) => LnRow(r, y, w.Span<float>(), b.Span<float>(), (float)eps), null!)
            : AlongAxis(x, x.Shape.Length - 1, null!, (r, y, _) => LnRow(r, y, w.Span<double>(), b.Span<double>(), eps));
    }

    private static void LnRow<T>(ReadOnlySpan<T> x, Span<T> y, ReadOnlySpan<T> w, ReadOnlySpan<T> b, T eps) where T : IFloatingPointIeee754<T>, IRootFunctions<T>
    {
        T n = T.CreateChecked(x.Length);
        T mean = Reduce.PairwiseSum(x) / n;
        TensorPrimitives.Subtract(x, mean, y);
        T var = TensorPrimitives.SumOfSquares<T>(y) / n;
        TensorPrimitives.Multiply(y, T.One / T.Sqrt(var + eps), y);
        TensorPrimitives.FusedMultiplyAdd(y, w, b, y);
    }
}
