// Without a GPU: how a reduction is spread over the GPU. Short reductions and strided ones with many outputs keep
// one thread per output; a long reduction over the contiguous axis gets a block per (output, part), a long strided
// one a thread per output with parts along the grid's y; the states' scratch stays one int-sized buffer.
using Kiln.Cuda.Backend;

namespace Kiln.Cuda.Tests;

public class ReductionSplitTests
{
    [Fact]
    public void ShortReductionsAndWideStridedOnesKeepAThreadPerOutput()
    {
        Assert.Equal(0, CudaBackend.SplitReduction(n: 1000, count: 63, innerContiguous: true).Parts);
        Assert.Equal(0, CudaBackend.SplitReduction(n: 16384, count: 4096, innerContiguous: false).Parts);
    }

    [Fact]
    public void ContiguousLongReductionsGetBlocks()
    {
        Assert.Equal((1L, true), CudaBackend.SplitReduction(n: 32768, count: 4096, innerContiguous: true));   // a row per block
        Assert.Equal((1024L, true), CudaBackend.SplitReduction(n: 1, count: 8L << 20, innerContiguous: true));   // a full sum
        Assert.Equal((3L, true), CudaBackend.SplitReduction(n: 5, count: 10000, innerContiguous: true));
    }

    [Fact]
    public void StridedLongReductionsSplitTheReducedRangeAcrossTheGrid()
    {
        var (parts, rows) = CudaBackend.SplitReduction(n: 4096, count: 4096, innerContiguous: false);   // a bias gradient
        Assert.False(rows);
        Assert.Equal(8, parts);   // 32768 threads in all, 512 rows each
        Assert.Equal(64, CudaBackend.SplitReduction(n: 1, count: 4096, innerContiguous: false).Parts);   // capped by count / 64
    }

    [Fact]
    public void TheScratchOfStatesStaysIntSized()
    {
        Assert.Equal(0, CudaBackend.SplitReduction(n: 800_000_000, count: 64, innerContiguous: true).Parts);
    }
}
