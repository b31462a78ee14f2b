// Ops generation needs on the GPU: index_add (the KV cache write), attention with a valid-key count (a cache
// with spare capacity) and RoPE with its offset as data. The count and offset are read back to the host (a
// synchronization), so a decode plan runs eagerly rather than as a captured graph.
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Cuda.Backend;

internal sealed partial class CudaBackend
{
    private long HostScalar(Realised v)
    {
        var h = Download(v);
        try { return h.DType == DType.Int32 ? h.Span<int>()[0] : h.Span<long>()[0]; }
        finally { Evaluator.Release(h); }
    }

    private Realised? Decode(Node node, Realised[] x)
    {
        var op = node.Op;
        if (ReferenceEquals(op, OpTable.IndexAdd) && x[0].DType == DType.Float32 && x[1].DType is DType.Int32 or DType.Int64)
        {
            int axis = ((IntAttrs)node.Attrs!).Value;
            var o = Copy(x[0]);
            var src = DenseF32(x[2], "index_add"); var idx = x[1].IsContiguous ? x[1] : Copy(x[1]);
            long outer = Shapes.Numel(node.Shape.AsSpan(0, axis)), inner = Shapes.Numel(node.Shape.AsSpan(axis + 1));
            int a = node.Shape[axis], n = src.Shape[axis];
            string it = idx.DType == DType.Int32 ? "int" : "long long";
            var kernel = Kernel($"index_add_f32_{idx.DType}", name => $$"""
                extern "C" __global__ void {{name}}(float* out, const float* src, const {{it}}* idx, long long total, int a, int n, long long inner)
                {
                    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
                    {
                        long long r = i % inner, j = (i / inner) % n, o = i / (inner * n);
                        long long at = idx[j];
                        if (at >= 0 && at < a) atomicAdd(out + (o * a + at) * inner + r, src[i]);
                    }
                }
                """);
            long total = outer * n * inner;
            if (total > 0)
                kernel.Launch((int)Math.Min((total + Threads - 1) / Threads, 65535L * 8), Threads, 0, S, P(o), P(src), P(idx), total, a, n, inner);
            return o;
        }
        if (ReferenceEquals(op, OpTable.Attention) && x.Length == 4)
        {
            // Only the first `valid` cached keys count: attend over a dense copy of them.
            int valid = (int)HostScalar(x[3]);
            var k = x[1]; var v = x[2];
            int axis = k.Shape.Length - 2;
            var ks = Copy(Kiln.Cpu.Views.Slice(k, axis, 0, valid, 1)); var vs = Copy(Kiln.Cpu.Views.Slice(v, axis, 0, valid, 1));
            var r = Attention(node, [x[0], ks, vs], backward: false);
            Evaluator.Release(ks); Evaluator.Release(vs);
            return r;
        }
        if (ReferenceEquals(op, OpTable.Rope) && x.Length == 2)
        {
            var a = (RopeAttrs)node.Attrs!;
            int offset = (int)HostScalar(x[1]);
            var xs = DenseF32(x[0], "rope"); int hd = xs.Shape[^1], seq = xs.Shape[^2];
            var o = Allocate(DType.Float32, node.Shape);
            Kern.Rope(P(xs), P(o), xs.Numel / Math.Max(hd, 1), seq, hd, a.Theta, offset, a.Interleaved, a.Inverse, DType.Float32, S);
            return o;
        }
        return null;
    }
}
