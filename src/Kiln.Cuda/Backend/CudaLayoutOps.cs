// Layout ops on the GPU: concat and pad (a strided store of each input into its window of the output) and
// triangle (keep one side of a diagonal, fill the other). Same semantics as Kiln.Cpu.LayoutKernels.
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Cuda.Backend;

internal sealed partial class CudaBackend
{
    /// <summary>The op's result, or null when <paramref name="node"/> is not a layout op handled here.</summary>
    private Realised? Layout(Node node, Realised[] x)
    {
        var op = node.Op;
        if (ReferenceEquals(op, OpTable.Concat))
        {
            int axis = ((IntAttrs)node.Attrs!).Value;
            var o = Allocate(node.DType, node.Shape);
            long start = 0;
            foreach (var part in x)
            {
                StoreInto(part, new Realised(o.Buffer, o.Offset + start * o.Strides[axis], part.Shape, o.Strides));
                start += part.Shape[axis];
            }
            return o;
        }
        if (ReferenceEquals(op, OpTable.Pad))
        {
            var p = (PadAttrs)node.Attrs!;
            var o = Run(node.Shape, node.DType, [], [$"{CudaCodegen.Compute(node.DType)} t0 = {CudaCodegen.Literal(p.Value, node.DType)};"], $"fill_{node.DType}_{p.Value:R}");
            long offset = 0;
            for (int d = 0; d < p.Before.Length; d++) offset += p.Before[d] * o.Strides[d];
            StoreInto(x[0], new Realised(o.Buffer, offset, x[0].Shape, o.Strides));
            return o;
        }
        if (ReferenceEquals(op, OpTable.Triangle))
        {
            var t = (TriangleAttrs)node.Attrs!;
            int rows = node.Shape[^2], cols = node.Shape[^1];
            return RunIndexed(node.Shape, node.DType, x[0], TriangleStatement(node.DType, t, rows, cols),
                $"triangle_{node.DType}_{t.Lower}_{t.Diagonal}_{t.Fill:R}_{rows}x{cols}");
        }
        return null;
    }

    /// <summary>Row r keeps columns c ≤ r + k (lower) or c ≥ r + k (upper) of x0; the rest is the fill. Reads the flat index i.</summary>
    internal static string TriangleStatement(DType dtype, TriangleAttrs t, int rows, int cols)
    {
        string keep = t.Lower ? "c <= r + (long long)k" : "c >= r + (long long)k";
        string ct = CudaCodegen.Compute(dtype);
        return $"long long c = i % {cols}LL, r = i / {cols}LL % {rows}LL; const int k = {t.Diagonal}; {ct} t0 = ({keep}) ? x0 : ({ct})({CudaCodegen.Literal(t.Fill, dtype)});";
    }

    /// <summary>An elementwise kernel over one input whose statement may also use the flat output index i.</summary>
    private Realised RunIndexed(int[] shape, DType dtype, Realised x, string statement, string key)
    {
        var dense = x.IsContiguous ? x : Copy(x);
        var r = Run(shape, dtype, [dense], [statement], key, indexed: true);
        if (!ReferenceEquals(dense, x)) Evaluator.Release(dense);
        return r;
    }

    /// <summary>Copies <paramref name="src"/> (any strides) into <paramref name="dst"/>, a strided window of a device buffer of the same shape.</summary>
    private void StoreInto(Realised src, Realised dst)
    {
        long n = src.Numel;
        if (n == 0) return;
        int rank = src.Shape.Length;
        if (rank > CudaCodegen.MaxRank) throw new NotSupportedException($"CUDA backend: rank {rank} > {CudaCodegen.MaxRank}");
        if (!src.Buffer.OnDevice) src = Upload(src);
        var kernel = Kernel($"store_into_{src.DType}", name => StoreIntoSource(name, src.DType));
        var m = new long[1 + rank + 2 * (rank + 1)];
        m[0] = rank;
        for (int d = 0; d < rank; d++) m[1 + d] = src.Shape[d];
        m[1 + rank] = src.Offset;
        for (int d = 0; d < rank; d++) m[2 + rank + d] = src.Shape[d] == 1 ? 0 : src.Strides[d];
        m[2 + 2 * rank] = dst.Offset;
        for (int d = 0; d < rank; d++) m[3 + 2 * rank + d] = dst.Strides[d];
        var meta = MetaBuffer("s:" + string.Join(",", m), m);
        kernel.Launch((int)Math.Min((n + Threads - 1) / Threads, 65535L * 8), Threads, 0, _current,
            KernelArg.Pointer(Ptr(dst)), n, KernelArg.Pointer(meta.Pointer), KernelArg.Pointer(Ptr(src)));
        Interlocked.Increment(ref Launches);
    }

    /// <summary>out[dst offset + Σ idx·dst strides] = in[src offset + Σ idx·src strides] over the shape in meta.</summary>
    internal static string StoreIntoSource(string name, DType dtype)
    {
        string t = CudaCodegen.CType(dtype);
        return $$"""
            extern "C" __global__ void {{name}}({{t}}* __restrict__ out, long long n, const long long* __restrict__ meta, const {{t}}* __restrict__ in)
            {
                // meta: rank, shape[rank], src offset, src strides[rank], dst offset, dst strides[rank]
                int rank = (int)meta[0];
                const long long* shape = meta + 1; const long long* ss = shape + rank + 1; const long long* ds = ss + rank + 1;
                for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
                {
                    long long so = ss[-1], dof = ds[-1], rem = i;
                    for (int d = rank - 1; d >= 0; --d) { long long c = rem % shape[d]; rem /= shape[d]; so += c * ss[d]; dof += c * ds[d]; }
                    out[dof] = in[so];
                }
            }
            """;
    }
}
