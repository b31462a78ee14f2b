// A process-wide cache of released CPU buffers in power-of-two size classes, so that intermediates of one
// Eval become the storage of the next instead of garbage. Lock-free bags per (dtype, class), capped in bytes.
//
// Why the GC nudge: values that Eval publishes into nodes are never released explicitly; when the user drops
// them they wait for the GC. Large arrays live on the large-object heap, which is only collected in gen-2,
// and every fresh large array costs page faults on first touch (about 25 ms for 32 MB here). So large
// buffers carry a finalizable Reclaimer that returns the array here when the buffer dies, and after a
// budget of fresh large allocations the pool asks for a cheap gen-1 collection, which is what lets those
// reclaimers run.
using System.Collections.Concurrent;

namespace Kiln.Runtime;

internal static class BufferPool
{
    private const int Classes = 40;
    private const long MaxPooledBytes = 1L << 30;          // never hold more than 1 GiB of idle buffers
    private const long LargeBytes = 85_000;                // the runtime's large-object threshold
    private const long FreshLargeBudget = 32L << 20;       // fresh large bytes between collections

    private static readonly ConcurrentBag<Array>[,] Bags = CreateBags();
    private static long _hits, _misses, _returns, _pooledBytes, _freshLarge;

    public static long Hits => Interlocked.Read(ref _hits);
    public static long Misses => Interlocked.Read(ref _misses);
    public static long Returns => Interlocked.Read(ref _returns);
    public static long PooledBytes => Interlocked.Read(ref _pooledBytes);

    private static ConcurrentBag<Array>[,] CreateBags()
    {
        int dtypes = Enum.GetValues<DType>().Length;
        var b = new ConcurrentBag<Array>[dtypes, Classes];
        for (int i = 0; i < dtypes; i++) for (int j = 0; j < Classes; j++) b[i, j] = new();
        return b;
    }

    private static int ClassOf(long n) => n <= 1 ? 0 : 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)(n - 1));

    /// <summary>
    /// The arena slice the evaluator planned for the kernel running on this thread (MemoryPlan): the kernel's first
    /// rent of exactly that dtype and length takes it. Kernels keep calling Rent as before; a kernel whose first
    /// such rent is a scratch buffer only gets the slice for that scratch, which is still safe (it is released
    /// like any value, and an arena slice is never pooled).
    /// </summary>
    [ThreadStatic] internal static Buffer? Planned;

    /// <summary>A buffer of at least <paramref name="length"/> elements; contents are unspecified.</summary>
    public static Buffer Rent(DType dtype, long length)
    {
        if (Planned is { } planned && planned.DType == dtype && planned.Length == length)
        {
            Planned = null;
            return planned;
        }
        int c = ClassOf(length);
        if (c < Classes && TryTake(dtype, c, length, out var pooled)) return pooled;
        long cap = c < Classes ? 1L << c : length;
        long bytes = cap * dtype.SizeInBytes();
        if (bytes >= LargeBytes && c < Classes && Interlocked.Add(ref _freshLarge, bytes) > FreshLargeBudget)
        {
            // Let dead published buffers come back before paying for fresh pages.
            Interlocked.Exchange(ref _freshLarge, 0);
            GC.Collect(1, GCCollectionMode.Forced, blocking: true);
            GC.WaitForPendingFinalizers();
            if (TryTake(dtype, c, length, out pooled)) return pooled;
        }
        Interlocked.Increment(ref _misses);
        return Wrap(dtype, Buffer.NewArray(dtype, Math.Max(cap, 1), zeroed: false), length);
    }

    /// <summary>
    /// A buffer of at least <paramref name="length"/> elements that may come from a pooled array up to
    /// <paramref name="classesAbove"/> size classes larger (a plan's arena: another plan's idle, larger arena serves
    /// it, so plans that take turns share one array instead of each keeping its own).
    /// </summary>
    public static Buffer RentAtLeast(DType dtype, long length, int classesAbove = 4)
    {
        int c = ClassOf(length);
        for (int k = c; k < Math.Min(Classes, c + classesAbove + 1); k++)
            if (TryTake(dtype, k, length, out var pooled)) return pooled;
        return Rent(dtype, length);
    }

    /// <summary>An idle array of size class <paramref name="c"/>, wrapped as a buffer of <paramref name="length"/> elements.</summary>
    private static bool TryTake(DType dtype, int c, long length, out Buffer buffer)
    {
        buffer = null!;
        if (!Bags[(int)dtype, c].TryTake(out var arr)) return false;
        Interlocked.Increment(ref _hits);
        Interlocked.Add(ref _pooledBytes, -Bytes(dtype, arr));
        buffer = Wrap(dtype, arr, length);
        return true;
    }

    private static long Bytes(DType dtype, Array a) => a.LongLength * dtype.SizeInBytes();

    private static Buffer Wrap(DType dtype, Array arr, long length) => new(dtype, arr, length);

    /// <summary>
    /// Arms GC reclaim for a value being published into a node. Only published values get it: a kernel's
    /// temporaries may be read through spans after their Buffer object is unreachable, and a finalizer must
    /// never hand such an array to another kernel. Published values stay reachable from their node.
    /// </summary>
    internal static void ArmReclaim(Buffer b)
    {
        if (b.OnDevice || b.InArena) return;   // device memory is reclaimed by its backend, an arena by its plan run
        if (b.Reclaim is not null || Bytes(b.DType, b.Data) < LargeBytes || b.Data.LongLength != (1L << ClassOf(b.Data.LongLength))) return;
        var r = new Buffer.Reclaimer(b.DType, b.Data);
        if (Interlocked.CompareExchange(ref b.Reclaim, r, null) is not null)
        {
            r.Disarm();                 // another thread armed one first: this one must never return the array
            GC.SuppressFinalize(r);
        }
    }

    /// <summary>Returns a buffer nothing uses any more (the caller guarantees no live view remains).</summary>
    public static void Return(Buffer b)
    {
        if (b.DeviceMemory is { } d) { d.Release(); return; }
        if (b.InArena) return;   // the whole arena goes back when its plan run ends
        if (b.Reclaim is { } r && !r.Disarm()) return;   // already reclaimed
        ReturnArray(b.DType, b.Data);
    }

    internal static void ReturnArray(DType dtype, Array data)
    {
        int c = ClassOf(data.LongLength);
        if (c >= Classes || data.LongLength != (1L << c)) return;
        long bytes = Bytes(dtype, data);
        if (Interlocked.Add(ref _pooledBytes, bytes) > MaxPooledBytes) { Interlocked.Add(ref _pooledBytes, -bytes); return; }
        Bags[(int)dtype, c].Add(data);
        Interlocked.Increment(ref _returns);
    }
}
