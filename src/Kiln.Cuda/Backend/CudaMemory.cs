// Device memory for engine buffers: a caching allocator per device (size classes of powers of two), so the
// buffers an Eval releases are reused by the next one instead of going through cuMemAlloc/cuMemFree.
using System.Collections.Concurrent;
using System.Numerics;
using Kiln.Runtime;

namespace Kiln.Cuda.Backend;

internal sealed class CudaAllocator(CudaContext context, Device device)
{
    private readonly ConcurrentDictionary<long, ConcurrentBag<DeviceBuffer>> _free = new();
    private long _cachedBytes, _reservedBytes, _peakReservedBytes, _allocations, _cacheHits, _retries;

    public Device Device => device;

    public CudaMemory Rent(long bytes)
    {
        long size = (long)BitOperations.RoundUpToPowerOf2((ulong)Math.Max(bytes, 256));
        if (_free.TryGetValue(size, out var bag) && bag.TryTake(out var b))
        {
            Interlocked.Add(ref _cachedBytes, -size);
            Interlocked.Increment(ref _cacheHits);
            return new CudaMemory(this, b, size);
        }
        DeviceBuffer fresh;
        try { fresh = DeviceBuffer.Allocate(context, size); }
        catch (CudaException) when (Interlocked.Read(ref _cachedBytes) > 0)
        {
            Trim();   // out of memory: free the cache and retry once (the retry's error names the sizes)
            Interlocked.Increment(ref _retries);
            fresh = DeviceBuffer.Allocate(context, size);
        }
        Interlocked.Increment(ref _allocations);
        long reserved = Interlocked.Add(ref _reservedBytes, size);
        for (long peak = Interlocked.Read(ref _peakReservedBytes); reserved > peak; peak = Interlocked.Read(ref _peakReservedBytes))
            if (Interlocked.CompareExchange(ref _peakReservedBytes, reserved, peak) == peak) break;
        return new CudaMemory(this, fresh, size);
    }

    internal void Return(DeviceBuffer b, long size)
    {
        _free.GetOrAdd(size, _ => []).Add(b);
        Interlocked.Add(ref _cachedBytes, size);
    }

    public void Trim()
    {
        foreach (var bag in _free.Values)
            while (bag.TryTake(out var b))
            {
                Interlocked.Add(ref _cachedBytes, -b.Bytes);
                Interlocked.Add(ref _reservedBytes, -b.Bytes);
                b.Dispose();
            }
    }

    public CudaMemoryStats Stats(long graphBytes, int graphs) => new(
        Interlocked.Read(ref _reservedBytes), Interlocked.Read(ref _cachedBytes), Interlocked.Read(ref _peakReservedBytes),
        graphBytes, graphs, Interlocked.Read(ref _allocations), Interlocked.Read(ref _cacheHits), Interlocked.Read(ref _retries));
}


/// <summary>One engine buffer's device memory. Release (or finalization of a dropped value) returns it to the cache.</summary>
internal sealed class CudaMemory : IDeviceMemory
{
    private readonly CudaAllocator _owner;
    private DeviceBuffer? _buffer;

    private readonly bool _pinned;

    public CudaMemory(CudaAllocator owner, DeviceBuffer buffer, long bytes, bool pinned = false) { _owner = owner; _buffer = buffer; Bytes = bytes; _pinned = pinned; }

    /// <summary>Memory a captured CUDA Graph owns (its arena and staging buffers): releases are ignored.</summary>
    public static CudaMemory Pinned(CudaAllocator owner, long bytes)
    {
        var m = owner.Rent(bytes);
        var pinned = new CudaMemory(owner, m.Buffer, m.Bytes, pinned: true);
        GC.SuppressFinalize(m);   // the buffer moved to the pinned wrapper
        m.Forget();
        return pinned;
    }

    private void Forget() => _buffer = null;

    public Device Device => _owner.Device;
    public long Bytes { get; }
    public ulong Pointer => (_buffer ?? throw new ObjectDisposedException(nameof(CudaMemory), "device memory used after release")).Pointer;
    public DeviceBuffer Buffer => _buffer ?? throw new ObjectDisposedException(nameof(CudaMemory), "device memory used after release");

    public void Release()
    {
        if (_pinned) return;
        Free();
    }

    /// <summary>Gives the memory back to the cache, pinned or not (a dropped graph's arena and staging buffers).</summary>
    public void Free()
    {
        var b = Interlocked.Exchange(ref _buffer, null);
        if (b is null) return;
        GC.SuppressFinalize(this);
        _owner.Return(b, Bytes);
    }

    // A published value dropped without release: its memory goes back to the cache (no CUDA call here).
    ~CudaMemory() { if (Interlocked.Exchange(ref _buffer, null) is { } b) _owner.Return(b, Bytes); }   // pinned too: its graph is gone
}
