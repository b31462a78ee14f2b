// Kernels specific to language models: rotary position embedding and cross-entropy (forward and gradient).
using System.Numerics;
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class ModelKernels
{
    /// <summary>
    /// RoPE over the last axis (size D, even) with positions along axis −2. Interleaved rotates pairs
    /// (2i, 2i+1) (llama2.c, Meta); half-split rotates (i, i + D/2) (Hugging Face). Frequency θ^(−2i/D).
    /// </summary>
    public static Realised Rope(Realised input, RopeAttrsView a)
    {
        var x = Strided.Contiguous(input);
        var o = Realised.Contiguous(BufferPool.Rent(x.DType, x.Numel), x.Shape);
        int d = x.Shape[^1], seq = x.Shape[^2], half = d / 2;
        long rows = x.Numel / d;
        // cos/sin table in double: (seq, half)
        var cos = new double[seq * half]; var sin = new double[seq * half];
        for (int p = 0; p < seq; p++)
            for (int i = 0; i < half; i++)
            {
                double ang = (p + a.Offset) * Math.Pow(a.Theta, -2.0 * i / d);
                cos[p * half + i] = Math.Cos(ang);
                sin[p * half + i] = a.Inverse ? -Math.Sin(ang) : Math.Sin(ang);
            }
        if (x.DType is not (DType.Float32 or DType.Float64)) throw new NotSupportedException($"rope: dtype {x.DType.ShortName()}");
        Par.For(rows, Par.ThreadsFor(x.Numel), (r0, r1) =>
        {
            if (x.DType == DType.Float32) Rows(x.Span<float>(), o.Span<float>(), r0, r1, seq, d, a.Interleaved, cos, sin);
            else Rows(x.Span<double>(), o.Span<double>(), r0, r1, seq, d, a.Interleaved, cos, sin);
        });
        Strided.Done(x, input);
        return o;
    }

    internal readonly record struct RopeAttrsView(double Theta, bool Interleaved, int Offset, bool Inverse);

    private static void Rows<T>(Span<T> x, Span<T> y, long r0, long r1, int seq, int d, bool interleaved, double[] cos, double[] sin) where T : IFloatingPointIeee754<T>
    {
        int half = d / 2;
        for (long r = r0; r < r1; r++)
        {
            int p = (int)(r % seq);
            var xr = x.Slice((int)(r * d), d); var yr = y.Slice((int)(r * d), d);
            for (int i = 0; i < half; i++)
            {
                int i0 = interleaved ? 2 * i : i, i1 = interleaved ? 2 * i + 1 : i + half;
                T c = T.CreateTruncating(cos[p * half + i]), s = T.CreateTruncating(sin[p * half + i]);
                T a = xr[i0], b = xr[i1];
                yr[i0] = a * c - b * s;
                yr[i1] = a * s + b * c;
            }
        }
    }

    /// <summary>
    /// Mean over non-ignored rows of −Σ q·log softmax(logits), q = (1−ε)·onehot + ε/C (PyTorch's label smoothing).
    /// No probability tensor is kept: each row is reduced on the fly, rows spread across threads; the row
    /// losses are summed in row order, so the result does not depend on the thread count.
    /// </summary>
    public static Realised CrossEntropy(Realised logitsIn, Realised targetsIn, int ignore, double eps)
    {
        var logits = Strided.Contiguous(logitsIn);
        var targets = Convert.Cast(targetsIn, DType.Int64);
        int c = logits.Shape[^1];
        long n = logits.Numel / Math.Max(c, 1);
        var loss = new double[n];
        Par.For(n, Par.ThreadsFor(logits.Numel), (r0, r1) =>
        {
            var t = targets.Span<long>();
            var tmp = new double[c];
            var ftmp = logits.DType == DType.Float32 ? new float[c] : null;
            for (long r = r0; r < r1; r++)
            {
                long y = CheckedTarget(t[(int)r], r, c, ignore, "cross_entropy");
                if (y == ignore) { loss[r] = double.NaN; continue; }
                if (ftmp is not null && eps == 0)
                {
                    // fp32 rows: vectorised max and fused exp+sum (the scalar double loop cost ~8 ns per class)
                    var row = logits.Span<float>().Slice((int)(r * c), c);
                    float m = System.Numerics.Tensors.TensorPrimitives.Max(row);
                    loss[r] = m + Math.Log(FastExp.ExpShiftedSum(row, m, ftmp)) - row[(int)y];
                    continue;
                }
                Row(logits, r, c, tmp);
                double lse = LogSumExp(tmp);
                double smooth = 0;
                if (eps != 0) { foreach (double v in tmp) smooth += lse - v; smooth /= c; }
                loss[r] = (1 - eps) * (lse - tmp[y]) + eps * smooth;
            }
        });
        double total = 0; long count = 0;
        foreach (double l in loss) if (!double.IsNaN(l)) { total += l; count++; }
        var o = Realised.Contiguous(BufferPool.Rent(logits.DType, 1), []);
        double mean = total / count;   // 0/0 = NaN when every row is ignored, as in PyTorch
        if (logits.DType == DType.Float32) o.Span<float>()[0] = (float)mean; else o.Span<double>()[0] = mean;
        Strided.Done(logits, logitsIn);
        Strided.Done(targets, targetsIn);
        return o;
    }

    /// <summary>d/dlogits of the mean loss: (softmax − q)·g/count on counted rows, 0 on ignored rows.</summary>
    public static Realised CrossEntropyGrad(Realised logitsIn, Realised targetsIn, Realised upstream, int ignore, double eps)
    {
        var logits = Strided.Contiguous(logitsIn);
        var targets = Convert.Cast(targetsIn, DType.Int64);
        var g = new double[1];
        var up = Convert.Cast(upstream, DType.Float64);
        Convert.ReadDoubles(up, g);
        Strided.Done(up, upstream);
        int c = logits.Shape[^1];
        long n = logits.Numel / Math.Max(c, 1);
        long count = 0;
        var ts = targets.Span<long>();
        for (long r = 0; r < n; r++) if (CheckedTarget(ts[(int)r], r, c, ignore, "cross_entropy_grad") != ignore) count++;
        double scale = g[0] / count;
        var o = Realised.Contiguous(BufferPool.Rent(logits.DType, logits.Numel), logits.Shape);
        Par.For(n, Par.ThreadsFor(logits.Numel), (r0, r1) =>
        {
            var t = targets.Span<long>();
            var tmp = new double[c];
            for (long r = r0; r < r1; r++)
            {
                long y = t[(int)r];
                if (o.DType == DType.Float32 && y != ignore)
                {
                    // fp32: softmax row straight into the output, then subtract the target distribution and scale
                    var row = logits.Span<float>().Slice((int)(r * c), c);
                    var d = o.Span<float>().Slice((int)(r * c), c);
                    float m = System.Numerics.Tensors.TensorPrimitives.Max(row);
                    float sum = FastExp.ExpShiftedSum(row, m, d);
                    System.Numerics.Tensors.TensorPrimitives.Multiply(d, (float)(scale / sum), d);
                    if (eps != 0) System.Numerics.Tensors.TensorPrimitives.Subtract(d, (float)(eps / c * scale), d);
                    d[(int)y] -= (float)((1 - eps) * scale);
                    continue;
                }
                if (y != ignore)
                {
                    Row(logits, r, c, tmp);
                    double lse = LogSumExp(tmp);
                    for (int j = 0; j < c; j++) tmp[j] = (Math.Exp(tmp[j] - lse) - (eps / c + (j == y ? 1 - eps : 0))) * scale;
                }
                else Array.Clear(tmp);
                if (o.DType == DType.Float32) { var d = o.Span<float>().Slice((int)(r * c), c); for (int j = 0; j < c; j++) d[j] = (float)tmp[j]; }
                else tmp.AsSpan().CopyTo(o.Span<double>().Slice((int)(r * c), c));
            }
        });
        Strided.Done(logits, logitsIn);
        Strided.Done(targets, targetsIn);
        return o;
    }

    private static long CheckedTarget(long y, long row, int classes, int ignore, string op) =>
        y == ignore || (y >= 0 && y < classes) ? y
            : throw new IndexOutOfRangeException($"{op}: target {y} at row {row} is out of range for {classes} classes (ignore_index is {ignore})");

    private static void Row(Realised logits, long r, int c, double[] dst)
    {
        if (logits.DType == DType.Float32) { var s = logits.Span<float>().Slice((int)(r * c), c); for (int j = 0; j < c; j++) dst[j] = s[j]; }
        else logits.Span<double>().Slice((int)(r * c), c).CopyTo(dst);
    }

    private static double LogSumExp(double[] v)
    {
        double m = double.NegativeInfinity;
        foreach (double x in v) m = Math.Max(m, x);
        if (double.IsInfinity(m)) return m;
        double s = 0;
        foreach (double x in v) s += Math.Exp(x - m);
        return m + Math.Log(s);
    }
}
