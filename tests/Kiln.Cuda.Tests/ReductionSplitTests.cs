// Without a GPU: how a reduction is spread over the GPU. Short reductions and strided ones with many outputs keep
// one thread per output (one part: the kernel stores the result itself); a long reduction over the contiguous
// axis gets a block per (output, part); a long strided one a thread per output with parts along the grid's y, up
// to ~256K threads; the states' scratch stays one int-sized buffer. And how axes that are one run in memory merge.
using Kiln.Cuda.Backend;

namespace Kiln.Cuda.Tests;

public class ReductionSplitTests
{
    [Fact]
    public void ShortReductionsAndWideStridedOnesKeepAThreadPerOutput()
    {
        Assert.Equal((1L, false), CudaBackend.SplitReduction(n: 1000, count: 255, innerContiguous: true));
        Assert.Equal((1L, false), CudaBackend.SplitReduction(n: 262144, count: 4096, innerContiguous: false));
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
        var (parts, rows) = CudaBackend.SplitReduction(n: 4096, count: 2048, innerContiguous: false);   // a bias gradient
        Assert.False(rows);
        Assert.Equal(32, parts);   // 131072 threads, 64 rows each (capped by count / 64)
        Assert.Equal(64, CudaBackend.SplitReduction(n: 4096, count: 1 << 20, innerContiguous: false).Parts);   // ~256K threads
        Assert.Equal(64, CudaBackend.SplitReduction(n: 1, count: 4096, innerContiguous: false).Parts);   // capped by count / 64
    }

    [Fact]
    public void TheScratchOfStatesStaysIntSized()
    {
        Assert.Equal(1, CudaBackend.SplitReduction(n: 800_000, count: 1L << 30, innerContiguous: true).Parts);
    }

    private static void Merged(int[] shape, long[] strides, int[] inShape, long[] inStrides)
    {
        var (s, st) = CudaBackend.MergeRuns(inShape, inStrides);
        Assert.Equal(shape, s);
        Assert.Equal(strides, st);
    }

    [Fact]
    public void AxesThatAreOneRunInMemoryMerge()
    {
        // (4, 512, 4096) dense: the leading two axes are one run of 2048 rows; the last stays its own.
        Merged([2048], new long[] { 4096 }, [4, 512], [512L * 4096, 4096]);
        Merged([8388608], new long[] { 1 }, [4, 512, 4096], [512L * 4096, 4096, 1]);
        // Size-1 axes drop out; a permuted pair does not merge; broadcast (stride 0) axes merge with each other.
        Merged([6, 5], new long[] { 1, 6 }, [1, 6, 5], [30, 1, 6]);
        Merged([12], new long[] { 0 }, [3, 4], [0, 0]);
        Merged(Array.Empty<int>(), Array.Empty<long>(), [1, 1], [5, 1]);
    }
}
