// RMSNorm and LayerNorm backward as one row kernel each: dx for every row and the weight (and bias) gradient
// summed over rows, packed into one flat output [dx | dw (| db)]. Written as primitives the same gradient was
// ~8 kernels and several full-size temporaries per norm.
using System.Numerics;
using System.Numerics.Tensors;
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class NormGradKernels
{
    /// <summary>r = 1/√(mean(x²)+eps); dx = r·(g⊙w) − x·r³·mean(g⊙w⊙x); dw = Σrows g⊙x·r.</summary>
    public static Realised RmsNorm(Realised x, Realised w, Realised g, double eps) =>
        x.DType == DType.Float32 ? Run<float>(x, w, g, (float)eps, layer: false) : Run<double>(x, w, g, eps, layer: false);

    /// <summary>x̂ = (x−μ)·r; dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ⊙x̂)) with ĝ = g⊙w; dw = Σ g⊙x̂; db = Σ g.</summary>
    public static Realised LayerNorm(Realised x, Realised w, Realised g, double eps) =>
        x.DType == DType.Float32 ? Run<float>(x, w, g, (float)eps, layer: true) : Run<double>(x, w, g, eps, layer: true);

    private static Realised Run<T>(Realised xIn, Realised wIn, Realised gIn, T eps, bool layer)
        where T : unmanaged, IFloatingPointIeee754<T>, IRootFunctions<T>
    {
        var x = Strided.Contiguous(xIn); var w = Strided.Contiguous(wIn); var g = Strided.Contiguous(gIn);
        int d = x.Shape[^1];
        long rows = d == 0 ? 0 : x.Numel / d;
        int extra = layer ? 2 * d : d;
        var o = Realised.Contiguous(BufferPool.Rent(x.DType, x.Numel + extra), [(int)(x.Numel + extra)]);
        int threads = Par.ThreadsFor(x.Numel);
        var partials = new T[threads][];
        Par.For(threads, threads, (c0, c1) =>
        {
            for (long c = c0; c < c1; c++)
            {
                var acc = new T[extra];   // this worker's dw (| db)
                partials[c] = acc;
                var gw = new T[d]; var xh = new T[d];
                ReadOnlySpan<T> xs = x.Span<T>(), ws = w.Span<T>(), gs = g.Span<T>();
                Span<T> os = o.Span<T>();
                long r0 = rows * c / threads, r1 = rows * (c + 1) / threads;
                T n = T.CreateChecked(d);
                for (long r = r0; r < r1; r++)
                {
                    var xr = xs.Slice((int)(r * d), d); var gr = gs.Slice((int)(r * d), d); var dx = os.Slice((int)(r * d), d);
                    TensorPrimitives.Multiply(gr, ws, gw);
                    if (!layer)
                    {
                        T inv = T.One / T.Sqrt(TensorPrimitives.SumOfSquares(xr) / n + eps);
                        T m = TensorPrimitives.Dot<T>(gw, xr) / n;
                        TensorPrimitives.Multiply(gw, inv, dx);
                        TensorPrimitives.MultiplyAdd(xr, -m * inv * inv * inv, dx, dx);
                        TensorPrimitives.Multiply(gr, xr, xh);
                        TensorPrimitives.MultiplyAdd(xh, inv, acc, acc);   // dw += g·x·r (r is this row's)
                    }
                    else
                    {
                        T mean = Reduce.PairwiseSum(xr) / n;
                        TensorPrimitives.Subtract(xr, mean, xh);
                        T inv = T.One / T.Sqrt(TensorPrimitives.SumOfSquares<T>(xh) / n + eps);
                        TensorPrimitives.Multiply(xh, inv, xh);                  // x̂
                        T mg = TensorPrimitives.Sum<T>(gw) / n, mgx = TensorPrimitives.Dot<T>(gw, xh) / n;
                        TensorPrimitives.Subtract(gw, mg, dx);
                        TensorPrimitives.MultiplyAdd(xh, -mgx, dx, dx);
                        TensorPrimitives.Multiply(dx, inv, dx);
                        var dw = acc.AsSpan(0, d); var db = acc.AsSpan(d, d);
                        TensorPrimitives.MultiplyAdd(gr, xh, dw, dw);
                        TensorPrimitives.Add(db, gr, db);
                    }
                }
            }
        });
        var tail = o.Span<T>().Slice((int)x.Numel, extra);
        tail.Clear();
        foreach (var p in partials) if (p is not null) TensorPrimitives.Add(tail, p, tail);
        Strided.Done(x, xIn); Strided.Done(w, wIn); Strided.Done(g, gIn);
        return o;
    }
}
