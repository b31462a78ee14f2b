// The fused LoRA linear: y = x·W + s·(h·A)·B (+ bias), h = x or dropout of x (Graph.LoraAttrs). The base product writes y, the rank-r product x·A goes
// to a small temporary, and its product with B accumulates into y with the scale as the GEMM's alpha — no
// separate scale, add or full-size temporary.
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class LoraKernel
{
    public static unsafe Realised Run(Realised[] inputs, Graph.Node node)
    {
        var attrs = (Graph.LoraAttrs)node.Attrs!;
        var x = Strided.Contiguous(inputs[0]);
        Realised w = inputs[1], a = inputs[2], b = inputs[3];
        Realised? bias = attrs.HasBias ? Strided.Contiguous(inputs[attrs.BiasIndex]) : null;
        var h = attrs.HasBranch ? Strided.Contiguous(inputs[attrs.BranchIndex]) : x;   // what the low-rank branch reads
        double scale = attrs.Scale;
        int inF = w.Shape[0], outF = w.Shape[1], rank = a.Shape[1];
        int m = (int)Shapes.Numel(x.Shape.AsSpan(0, x.Shape.Length - 1));   // rows, also when in = 0
        var o = Realised.Contiguous(BufferPool.Rent(x.DType, (long)m * outF), node.Shape);
        var t = BufferPool.Rent(x.DType, Math.Max((long)m * rank, 1));
        int threads = Settings.Threads;
        if (x.DType == DType.Float32)
            fixed (float* px = x.Buffer.Span<float>(), ph = h.Buffer.Span<float>(), pw = w.Buffer.Span<float>(), pa = a.Buffer.Span<float>(),
                   pb = b.Buffer.Span<float>(), po = o.Buffer.Span<float>(), pt = t.Span<float>())
            {
                float* xs = px + x.Offset;
                Gemm.Sgemm(m, outF, inF, 1f, xs, inF, 1, pw + w.Offset, w.Strides[0], w.Strides[1], 0f, po, outF, threads);
                Gemm.Sgemm(m, rank, inF, 1f, ph + h.Offset, inF, 1, pa + a.Offset, a.Strides[0], a.Strides[1], 0f, pt, rank, threads);
                Gemm.Sgemm(m, outF, rank, (float)scale, pt, rank, 1, pb + b.Offset, b.Strides[0], b.Strides[1], 1f, po, outF, threads);
            }
        else
            fixed (double* px = x.Buffer.Span<double>(), ph = h.Buffer.Span<double>(), pw = w.Buffer.Span<double>(), pa = a.Buffer.Span<double>(),
                   pb = b.Buffer.Span<double>(), po = o.Buffer.Span<double>(), pt = t.Span<double>())
            {
                double* xs = px + x.Offset;
                Gemm.Dgemm(m, outF, inF, 1, xs, inF, 1, pw + w.Offset, w.Strides[0], w.Strides[1], 0, po, outF, threads);
                Gemm.Dgemm(m, rank, inF, 1, ph + h.Offset, inF, 1, pa + a.Offset, a.Strides[0], a.Strides[1], 0, pt, rank, threads);
                Gemm.Dgemm(m, outF, rank, scale, pt, rank, 1, pb + b.Offset, b.Strides[0], b.Strides[1], 1, po, outF, threads);
            }
        if (bias is not null)
        {
            for (int i = 0; i < m; i++)
                if (x.DType == DType.Float32) System.Numerics.Tensors.TensorPrimitives.Add(o.Span<float>().Slice(i * outF, outF), bias.Span<float>(), o.Span<float>().Slice(i * outF, outF));
                else System.Numerics.Tensors.TensorPrimitives.Add(o.Span<double>().Slice(i * outF, outF), bias.Span<double>(), o.Span<double>().Slice(i * outF, outF));
            Strided.Done(bias, inputs[attrs.BiasIndex]);
        }
        BufferPool.Return(t);
        if (attrs.HasBranch) Strided.Done(h, inputs[attrs.BranchIndex]);
        Strided.Done(x, inputs[0]);
        return o;
    }
}
