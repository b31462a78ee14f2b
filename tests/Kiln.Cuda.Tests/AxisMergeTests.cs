// Without a GPU: how the generated elementwise kernels take a shape of more axes than they index (CudaCodegen.MaxRank):
// size-1 axes drop out and neighbours every operand walks as one run merge. Checked against the unmerged addressing,
// element by element: the merged shape must reach the same memory in the same (output row-major) order.
using Kiln.Cuda.Backend;
using Kiln.Runtime;

namespace Kiln.Cuda.Tests;

public class AxisMergeTests
{
    private static Realised View(int[] shape, long[] strides, long offset = 0)
    {
        long span = offset + 1 + shape.Select((n, d) => (long)(n - 1) * strides[d]).Sum();
        return new Realised(new Runtime.Buffer(DType.Float32, new float[span], span), offset, shape, strides);
    }

    /// <summary>Element offset of flat output index <paramref name="i"/> in <paramref name="v"/>, broadcast to <paramref name="shape"/>.</summary>
    private static long OffsetOf(long i, int[] shape, Realised v)
    {
        long at = v.Offset;
        int lead = shape.Length - v.Shape.Length;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            long c = i % shape[d]; i /= shape[d];
            if (d >= lead && v.Shape[d - lead] != 1) at += c * v.Strides[d - lead];
        }
        return at;
    }

    private static int[] Check(int[] shape, params Realised[] x)
    {
        var (merged, views) = CudaBackend.MergeAxes(shape, x);
        Assert.Equal(Shapes.Numel(shape), Shapes.Numel(merged));
        for (long i = 0; i < Shapes.Numel(shape); i++)
            for (int k = 0; k < x.Length; k++)
                Assert.Equal(OffsetOf(i, shape, x[k]), OffsetOf(i, merged, views[k]));
        return merged;
    }

    [Fact]
    public void DenseOperandsOfAnyRankBecomeOneAxis()
    {
        int[] shape = [3, 1, 2, 1, 2, 1, 2, 1, 2];
        var dense = View(shape, Shapes.ContiguousStrides(shape), offset: 5);
        Assert.Equal([48], Check(shape, dense, dense));
    }

    [Fact]
    public void ATransposedOrBroadcastOperandKeepsTheAxesItBreaks()
    {
        int[] shape = [2, 3, 4, 5, 1, 2, 1, 3, 2];   // rank 9
        var dense = View(shape, Shapes.ContiguousStrides(shape));
        // axes 2 and 3 swapped in memory: (2,3) cannot merge with its neighbours, the rest can
        var strides = Shapes.ContiguousStrides([2, 3, 5, 4, 1, 2, 1, 3, 2]);
        var swapped = View(shape, [strides[0], strides[1], strides[3], strides[2], strides[4], strides[5], strides[6], strides[7], strides[8]]);
        Assert.Equal([6, 4, 5, 12], Check(shape, dense, swapped));
        // a bias over the last two axes broadcast across the rest, and a scalar
        var bias = View([3, 2], [2, 1]);
        var scalar = View([], []);
        Assert.Equal([240, 6], Check(shape, dense, bias, scalar));
    }

    [Fact]
    public void AllSizeOneAxesLeaveOneElement()
    {
        int[] shape = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        Assert.Equal([1], Check(shape, View(shape, new long[10])));
    }
}
