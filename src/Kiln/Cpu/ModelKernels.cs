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
        if (x.DType == DType.Float32) Rows(x.Span<float>(), o.Span<float>(), rows, seq, d, a.Interleaved, cos, sin);
        else if (x.DType == DType.Float64) Rows(x.Span<double>(), o.Span<double>(), rows, seq, d, a.Interleaved, cos, sin);
        else throw new NotSupportedException($"rope: dtype {x.DType.ShortName()}");
        Strided.Done(x, input);
        return o;
    }

    internal readonly record struct RopeAttrsView(double Theta, bool Interleaved, int Offset, bool Inverse);

    private static void Rows<T>(Span<T> x, Span<T> y, long rows, int seq, int d, bool interleaved, double[] cos, double[] sin) where T : IFloatingPointIeee754<T>
    {
        int half = d / 2;
        for (long r = 0; r < rows; r++)
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
    /// No probability tensor is kept: each row is reduced on the fly.
    /// </summary>
    public static Realised CrossEntropy(Realised logits, Realised targets, int ignore, double eps)
    {
        logits = Strided.Contiguous(logits);
        var t = Convert.Cast(targets, DType.Int64).Span<long>();
        int c = logits.Shape[^1];
        long n = logits.Numel / Math.Max(c, 1);
        double total = 0; long count = 0;
        var tmp = new double[c];
        for (long r = 0; r < n; r++)
        {
            long y = t[(int)r];
            if (y == ignore) continue;
            if (y < 0 || y >= c) throw new IndexOutOfRangeException($"cross_entropy: target {y} at row {r} is out of range for {c} classes (ignore_index is {ignore})");
            Row(logits, r, c, tmp);
            double lse = LogSumExp(tmp);
            double nll = lse - tmp[y];
            double smooth = 0;
            if (eps != 0) { foreach (double v in tmp) smooth += lse - v; smooth /= c; }
            total += (1 - eps) * nll + eps * smooth;
            count++;
        }
        var o = Realised.Contiguous(BufferPool.Rent(logits.DType, 1), []);
        double mean = total / count;   // 0/0 = NaN when every row is ignored, as in PyTorch
        if (logits.DType == DType.Float32) o.Span<float>()[0] = (float)mean; else o.Span<double>()[0] = mean;
        return o;
    }

    /// <summary>d/dlogits of the mean loss: (softmax − q)·g/count on counted rows, 0 on ignored rows.</summary>
    public static Realised CrossEntropyGrad(Realised logits, Realised targets, Realised upstream, int ignore, double eps)
    {
        logits = Strided.Contiguous(logits);
        var t = Convert.Cast(targets, DType.Int64).Span<long>();
        var g = new double[1]; Convert.ReadDoubles(Convert.Cast(upstream, DType.Float64), g);
        int c = logits.Shape[^1];
        long n = logits.Numel / Math.Max(c, 1);
        long count = 0;
        for (long r = 0; r < n; r++) if (t[(int)r] != ignore) count++;
        var outD = new double[logits.Numel];
        var tmp = new double[c];
        for (long r = 0; r < n; r++)
        {
            long y = t[(int)r];
            if (y == ignore) continue;
            if (y < 0 || y >= c) throw new IndexOutOfRangeException($"cross_entropy_grad: target {y} at row {r} is out of range for {c} classes (ignore_index is {ignore})");
            Row(logits, r, c, tmp);
            double lse = LogSumExp(tmp);
            for (int j = 0; j < c; j++)
            {
                double q = eps / c + (j == y ? 1 - eps : 0);
                outD[r * c + j] = (Math.Exp(tmp[j] - lse) - q) * g[0] / count;
            }
        }
        var o = Realised.Contiguous(BufferPool.Rent(logits.DType, logits.Numel), logits.Shape);
        Convert.WriteDoubles(outD, o);
        return o;
    }

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
