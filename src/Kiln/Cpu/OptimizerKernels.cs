// Kernels of the multi-tensor optimizer ops: parameters are processed in parallel, each with vector loops.
using System.Numerics.Tensors;
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class OptimizerKernels
{
    public static Realised SumOfSquares(Realised[] xs)
    {
        double total = 0;
        foreach (var xIn in xs)
        {
            var x = Strided.Contiguous(xIn);
            if (x.DType == DType.Float32)
            {
                var s = x.Span<float>();
                for (int i = 0; i < s.Length; i += 4096) total += TensorPrimitives.SumOfSquares(s.Slice(i, Math.Min(4096, s.Length - i)));   // fp32 within a chunk, fp64 across
            }
            else total += TensorPrimitives.SumOfSquares(x.Span<double>());
            Strided.Done(x, xIn);
        }
        var o = Realised.Contiguous(BufferPool.Rent(xs[0].DType, 1), []);
        if (o.DType == DType.Float32) o.Span<float>()[0] = (float)total; else o.Span<double>()[0] = total;
        return o;
    }

    /// <summary>torch.optim.AdamW per element: p·decay − stepSize·m'/(√v'·denomScale + eps), g scaled by gradScale first.</summary>
    public static Realised AdamW(Realised[] x, AdamWAttrs a)
    {
        float stepSize = x[0].Span<float>()[0], denomScale = x[1].Span<float>()[0], decay = x[2].Span<float>()[0], gradScale = x[3].Span<float>()[0];
        int count = (x.Length - 4) / 4;
        var offsets = new long[count + 1];
        for (int k = 0; k < count; k++) offsets[k + 1] = offsets[k] + 3 * x[4 + 4 * k].Numel;
        var o = Realised.Contiguous(BufferPool.Rent(DType.Float32, offsets[count]), [(int)offsets[count]]);
        float b1 = (float)a.Beta1, b2 = (float)a.Beta2, eps = (float)a.Eps;
        Par.For(count, Par.ThreadsFor(offsets[count]), (k0, k1) =>
        {
            for (long k = k0; k < k1; k++)
            {
                int at = 4 + 4 * (int)k;
                Realised p = Strided.Contiguous(x[at]), g = Strided.Contiguous(x[at + 1]), m = Strided.Contiguous(x[at + 2]), v = Strided.Contiguous(x[at + 3]);
                int n = (int)p.Numel;
                var outs = o.Span<float>().Slice((int)offsets[k], 3 * n);
                Span<float> p2 = outs[..n], m2 = outs.Slice(n, n), v2 = outs.Slice(2 * n, n);
                ReadOnlySpan<float> ps = p.Span<float>(), gs = g.Span<float>(), ms = m.Span<float>(), vs = v.Span<float>();
                for (int i = 0; i < n; i++)
                {
                    float gi = gs[i] * gradScale;
                    float mi = b1 * ms[i] + (1 - b1) * gi;
                    float vi = b2 * vs[i] + (1 - b2) * gi * gi;
                    m2[i] = mi; v2[i] = vi;
                    p2[i] = ps[i] * decay - stepSize * mi / (MathF.Sqrt(vi) * denomScale + eps);
                }
                Strided.Done(p, x[at]); Strided.Done(g, x[at + 1]); Strided.Done(m, x[at + 2]); Strided.Done(v, x[at + 3]);
            }
        });
        return o;
    }
}
