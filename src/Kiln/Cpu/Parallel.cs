// When CPU work is split across threads: only above a size where the fork/join cost (~5-20 µs) pays.
namespace Kiln.Cpu;

internal static class Par
{
    /// <summary>Elements of simple elementwise work below which one thread is faster.</summary>
    public const long MinElementsPerThread = 1 << 15;

    public static int ThreadsFor(long work, long minPerThread = MinElementsPerThread) =>
        (int)Math.Clamp(work / Math.Max(minPerThread, 1), 1, Settings.Threads);

    /// <summary>Runs body(start, end) over [0, n) in contiguous chunks on up to <paramref name="threads"/> threads.</summary>
    public static void For(long n, int threads, Action<long, long> body)
    {
        if (threads <= 1 || n <= 1) { body(0, n); return; }
        int chunks = (int)Math.Min(n, threads);
        try
        {
            System.Threading.Tasks.Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, c =>
            {
                long s = n * c / chunks, e = n * (c + 1) / chunks;
                if (e > s) body(s, e);
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count >= 1)
        {
            // A kernel's own error (op, index, shape) is what the caller should see.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
    }
}
