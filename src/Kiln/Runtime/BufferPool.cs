// A process-wide cache of released CPU buffers in power-of-two size classes, so that intermediates of one
// Eval become the storage of the next instead of garbage. Lock-free bags per (dtype, class).
using System.Collections.Concurrent;

namespace Kiln.Runtime;

internal static class BufferPool
{
    private const int Classes = 40;
    private const int MaxPerClass = 16;
    private static readonly ConcurrentBag<Array>[,] Bags = CreateBags();
    private static long _hits, _misses, _returns;

    public static long Hits => Interlocked.Read(ref _hits);
    public static long Misses => Interlocked.Read(ref _misses);
    public static long Returns => Interlocked.Read(ref _returns);

    private static ConcurrentBag<Array>[,] CreateBags()
    {
        int dtypes = Enum.GetValues<DType>().Length;
        var b = new ConcurrentBag<Array>[dtypes, Classes];
        for (int i = 0; i < dtypes; i++) for (int j = 0; j < Classes; j++) b[i, j] = new();
        return b;
    }

    private static int ClassOf(long n) => n <= 1 ? 0 : 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)(n - 1));

    /// <summary>A buffer of at least <paramref name="length"/> elements; contents are unspecified.</summary>
    public static Buffer Rent(DType dtype, long length)
    {
        int c = ClassOf(length);
        if (c < Classes && Bags[(int)dtype, c].TryTake(out var arr))
        {
            Interlocked.Increment(ref _hits);
            return new Buffer(dtype, arr, length);
        }
        Interlocked.Increment(ref _misses);
        long cap = c < Classes ? 1L << c : length;
        return new Buffer(dtype, Buffer.NewArray(dtype, Math.Max(cap, 1), zeroed: false), length);
    }

    public static Buffer RentZeroed(DType dtype, long length)
    {
        var b = Rent(dtype, length);
        System.Array.Clear(b.Data, 0, (int)length);
        return b;
    }

    public static void Return(Buffer b)
    {
        int c = ClassOf(b.Data.LongLength);
        if (c >= Classes || b.Data.LongLength != (1L << c)) return;
        var bag = Bags[(int)b.DType, c];
        if (bag.Count >= MaxPerClass) return;
        bag.Add(b.Data);
        Interlocked.Increment(ref _returns);
    }
}
