// matmul_residual: y = x·W + r with the residual as the GEMM's C and beta = 1, so the add happens inside the
// GEMM's store (no separate pass reading the product back). x (..., K) is taken as rows; W is 2-D.
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class ResidualKernel
{
    public static unsafe Realised Run(Realised[] inputs, Graph.Node node)
    {
        var x = Strided.Contiguous(inputs[0]);
        Realised w = inputs[1];
        var o = Indexing.Copy(inputs[2]);   // the residual becomes C (a fresh dense copy: the GEMM writes into it)
        int k = w.Shape[0], n = w.Shape[1];
        int m = (int)(x.Numel / Math.Max(k, 1));
        int threads = Settings.Threads;
        if (x.DType == DType.Float32)
            fixed (float* px = x.Buffer.Span<float>(), pw = w.Buffer.Span<float>(), po = o.Buffer.Span<float>())
                Gemm.Sgemm(m, n, k, 1f, px + x.Offset, k, 1, pw + w.Offset, w.Strides[0], w.Strides[1], 1f, po, n, threads);
        else
            fixed (double* px = x.Buffer.Span<double>(), pw = w.Buffer.Span<double>(), po = o.Buffer.Span<double>())
                Gemm.Dgemm(m, n, k, 1, px + x.Offset, k, 1, pw + w.Offset, w.Strides[0], w.Strides[1], 1, po, n, threads);
        Strided.Done(x, inputs[0]);
        return o;
    }
}
