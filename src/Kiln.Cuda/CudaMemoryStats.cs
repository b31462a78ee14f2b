namespace Kiln.Cuda;

/// <summary>
/// The caching allocator of one device: <paramref name="ReservedBytes"/> held from the driver (in use + cached),
/// <paramref name="CachedBytes"/> free for reuse, <paramref name="PeakReservedBytes"/> the most ever held,
/// <paramref name="GraphBytes"/> owned by captured CUDA Graphs (arenas and staging buffers) in
/// <paramref name="Graphs"/> instantiated graphs; driver allocations, requests served from the cache, and
/// out-of-memory retries after trimming the cache.
/// </summary>
public readonly record struct CudaMemoryStats(long ReservedBytes, long CachedBytes, long PeakReservedBytes, long GraphBytes, int Graphs,
    long DriverAllocations, long CacheHits, long OomRetries)
{
    public long InUseBytes => ReservedBytes - CachedBytes;
}
