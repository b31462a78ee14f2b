// Ops generation needs on the GPU: index_add (the KV cache write, CudaIndexOps), attention with a valid-key count (a cache
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
        if (ReferenceEquals(op, OpTable.IndexAdd)) return IndexAddAsScatter(node, x);   // the KV cache write
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
