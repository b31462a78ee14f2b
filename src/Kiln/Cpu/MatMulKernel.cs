// Batched matmul over broadcast batch axes. Operands are passed to the GEMM with their own strides, so a
// transposed or broadcast operand is read in place (the GEMM's packing absorbs the layout).
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class MatMulKernel
{
    /// <summary>
    /// bf16/f16 operands go to the GEMM as they are (widened while packing) and accumulate into an fp32
    /// result, which is then rounded to the operands' dtype.
    /// </summary>
    public static Realised Run(Realised a, Realised b, int[] outShape)
    {
        if (a.DType is not (DType.BFloat16 or DType.Float16)) return Compute(a, b, outShape);
        var wide = Compute(a, b, outShape);
        var narrowed = Convert.Cast(wide, a.DType);
        Runtime.Evaluator.Release(wide);
        return narrowed;
    }

    /// <summary>matmul_epilogue: the product, then bias and activation applied row by row (rows still in cache).</summary>
    public static Realised RunWithEpilogue(Realised[] x, Graph.Node node) => RunWithEpilogue(x, node.Shape, (Graph.EpilogueAttrs)node.Attrs!);

    private static Realised RunWithEpilogue(Realised[] x, int[] shape, Graph.EpilogueAttrs attrs)
    {
        var y = Compute(x[0], x[1], shape);
        var bias = x.Length > 2 ? Strided.Contiguous(x[2]) : null;
        string? act = attrs.Activation;
        int n = shape[^1];
        long rows = n == 0 ? 0 : y.Numel / n;
        var actOp = act is null ? null : Passes.EpilogueFusion.Activations.First(o => o.Name == act);
        Par.For(rows, Par.ThreadsFor(y.Numel), (r0, r1) =>
        {
            if (y.DType == DType.Float32) Rows(y.Span<float>(), bias is null ? default : bias.Span<float>(), actOp is null ? null : FusedKernel.UnaryF32(actOp), r0, r1, n);
            else Rows(y.Span<double>(), bias is null ? default : bias.Span<double>(), actOp is null ? null : FusedKernel.UnaryF64(actOp), r0, r1, n);
        });
        if (bias is not null) Strided.Done(bias, x[2]);
        return y;
    }

    /// <summary>
    /// matmul_program: the product (with its bias/activation epilogue when it had one), then the fused group that
    /// read it, run over the product's own buffer (the group's output replaces it: no second buffer, no extra pass
    /// to hand the product over).
    /// </summary>
    public static Realised RunProgram(Realised[] x, Graph.Node node)
    {
        var a = (Graph.MatMulProgramAttrs)node.Attrs!;
        var mm = x[..a.MatMulInputs];
        var y = a.Epilogue is { } e ? RunWithEpilogue(mm, node.Shape, e) : Compute(mm[0], mm[1], node.Shape);
        var ins = new Realised[x.Length - a.MatMulInputs + 1];
        for (int i = 0, k = a.MatMulInputs; i < ins.Length; i++) ins[i] = i == a.Slot ? y : x[k++];
        return FusedKernel.Run(ins, a.Program, node.Shape, node.DType, into: y);
    }

    /// <summary>swiglu: up = x·Wu into the output, gate = x·Wg into a temporary, then out = silu(gate)·up per row.</summary>
    public static Realised RunSwiGlu(Realised[] x, Graph.Node node)
    {
        var up = Compute(x[0], x[2], node.Shape);
        var gate = Compute(x[0], x[1], node.Shape);
        int n = node.Shape[^1];
        long rows = n == 0 ? 0 : up.Numel / n;
        Par.For(rows, Par.ThreadsFor(up.Numel), (r0, r1) =>
        {
            if (up.DType == DType.Float32) GluRows(up.Span<float>(), gate.Span<float>(), r0, r1, n);
            else GluRows(up.Span<double>(), gate.Span<double>(), r0, r1, n);
        });
        Runtime.Evaluator.Release(gate);
        return up;
    }

    private static void GluRows<T>(Span<T> up, Span<T> gate, long r0, long r1, int n)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>, System.Numerics.IExponentialFunctions<T>, System.Numerics.IHyperbolicFunctions<T>
    {
        var s = new T[n];
        for (long r = r0; r < r1; r++)
        {
            var g = gate.Slice((int)(r * n), n); var u = up.Slice((int)(r * n), n);
            UnaryKernels<T>.Silu(g, s);
            System.Numerics.Tensors.TensorPrimitives.Multiply(u, s, u);
        }
    }

    private static void Rows<T>(Span<T> y, Span<T> bias, SpanMap<T>? act, long r0, long r1, int n) where T : System.Numerics.INumber<T>
    {
        // The activations' span maps are not in-place safe (SiLU and GELU reuse the output as scratch).
        var tmp = act is null ? null : new T[n];
        for (long r = r0; r < r1; r++)
        {
            var row = y.Slice((int)(r * n), n);
            if (!bias.IsEmpty) System.Numerics.Tensors.TensorPrimitives.Add(row, bias, row);
            if (act is null) continue;
            row.CopyTo(tmp);
            act(tmp, row);
        }
    }

    private static unsafe Realised Compute(Realised a, Realised b, int[] outShape)
    {
        int r = outShape.Length;
        int M = outShape[r - 2], N = outShape[r - 1], K = a.Shape[^1];
        var outType = a.DType is DType.BFloat16 or DType.Float16 ? DType.Float32 : a.DType;
        var o = Realised.Contiguous(BufferPool.Rent(outType, Shapes.Numel(outShape)), outShape);
        long batches = Shapes.Numel(outShape.AsSpan(0, r - 2));
        if (batches == 0 || M == 0 || N == 0) return o;
        // Batch strides of each operand as seen through the broadcast batch shape.
        var batchShape = outShape[..(r - 2)];
        long[] sa = BatchStrides(a, batchShape), sb = BatchStrides(b, batchShape);
        long aRs = a.Strides[^2], aCs = a.Strides[^1], bRs = b.Strides[^2], bCs = b.Strides[^1];
        var (bShape, bst) = batchShape.Length == 0 ? ([1], [[0L], [0L]]) : Strided.Coalesce(batchShape, sa, sb);
        // x(B, T, K)·W(K, N): one GEMM of B·T rows when W is shared and a's rows are evenly spaced (W packed once).
        if (batches > 1 && bShape.Length == 1 && bst[1][0] == 0 && bst[0][0] == M * aRs && batches * M <= int.MaxValue)
        {
            M *= (int)batches; batches = 1; bShape = [1]; bst = [[0L], [0L]];
        }
        double flops = 2.0 * M * N * K;
        bool parallelBatches = batches > 1 && flops < 1 << 21;
        int gemmThreads = parallelBatches ? 1 : Settings.Threads;
        int batchThreads = parallelBatches ? (int)Math.Min(batches, Settings.Threads) : 1;
        Par.For(batches, batchThreads, (s, e) =>
        {
            for (long i = s; i < e; i++)
            {
                long offA = a.Offset + Offset(i, bShape, bst[0]), offB = b.Offset + Offset(i, bShape, bst[1]);
                long offC = i * M * N;
                if (a.DType == DType.Float32)
                    fixed (float* pa = a.Buffer.Span<float>(), pb = b.Buffer.Span<float>(), pc = o.Buffer.Span<float>())
                        Gemm.Sgemm(M, N, K, 1f, pa + offA, aRs, aCs, pb + offB, bRs, bCs, 0f, pc + offC, N, gemmThreads);
                else if (a.DType == DType.Float64)
                    fixed (double* pa = a.Buffer.Span<double>(), pb = b.Buffer.Span<double>(), pc = o.Buffer.Span<double>())
                        Gemm.Dgemm(M, N, K, 1.0, pa + offA, aRs, aCs, pb + offB, bRs, bCs, 0.0, pc + offC, N, gemmThreads);
                else if (a.DType == DType.BFloat16)
                    fixed (BFloat16* pa = a.Buffer.Span<BFloat16>(), pb = b.Buffer.Span<BFloat16>())
                    fixed (float* pc = o.Buffer.Span<float>())
                        Gemm.SgemmHalf(M, N, K, 1f, (ushort*)pa + offA, aRs, aCs, (ushort*)pb + offB, bRs, bCs, HalfKind.BFloat16, 0f, pc + offC, N, gemmThreads);
                else if (a.DType == DType.Float16)
                    fixed (Half* pa = a.Buffer.Span<Half>(), pb = b.Buffer.Span<Half>())
                    fixed (float* pc = o.Buffer.Span<float>())
                        Gemm.SgemmHalf(M, N, K, 1f, (ushort*)pa + offA, aRs, aCs, (ushort*)pb + offB, bRs, bCs, HalfKind.Float16, 0f, pc + offC, N, gemmThreads);
                else throw new NotSupportedException($"matmul: dtype {a.DType.ShortName()} has no CPU kernel");
            }
        });
        return o;
    }

    private static long Offset(long index, int[] shape, long[] strides)
    {
        long off = 0;
        for (int d = shape.Length - 1; d >= 0; d--) { off += index % shape[d] * strides[d]; index /= shape[d]; }
        return off;
    }

    private static long[] BatchStrides(Realised x, int[] batchShape)
    {
        var r = new long[batchShape.Length];
        int xb = x.Shape.Length - 2, off = batchShape.Length - xb;
        for (int i = 0; i < xb; i++)
            r[off + i] = x.Shape[i] == 1 && batchShape[off + i] != 1 ? 0 : x.Strides[i];
        return r;
    }
}
