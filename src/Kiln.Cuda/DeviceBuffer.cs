// A block of device memory (cuMemAlloc_v2 or stream-ordered cuMemAllocAsync) with copies to and from host
// spans and other buffers. Dispose frees it; there is no finalizer (freeing needs the context).
using System.Runtime.InteropServices;
using Kiln.Cuda.Native;

namespace Kiln.Cuda;

public sealed unsafe class DeviceBuffer : IDisposable
{
    public CudaContext Context { get; }
    /// <summary>The device address (CUdeviceptr).</summary>
    public ulong Pointer { get; private set; }
    public long Bytes { get; }
    private readonly CudaStream? _asyncStream;

    private DeviceBuffer(CudaContext context, ulong ptr, long bytes, CudaStream? asyncStream)
    {
        Context = context; Pointer = ptr; Bytes = bytes; _asyncStream = asyncStream;
    }

    /// <summary>Allocates <paramref name="bytes"/> bytes. Out of memory is a CudaException naming the
    /// requested size and the device's free and total memory.</summary>
    public static DeviceBuffer Allocate(CudaContext context, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        context.MakeCurrent();
        ulong p = 0;
        int st = bytes == 0 ? 0 : CuNative.cuMemAlloc_v2(&p, (nuint)bytes);
        if (st != CuConst.CUDA_SUCCESS) throw AllocError(context, st, "cuMemAlloc_v2", bytes);
        return new DeviceBuffer(context, p, bytes, null);
    }

    public static DeviceBuffer Allocate<T>(CudaContext context, long count) where T : unmanaged =>
        Allocate(context, checked(count * sizeof(T)));

    /// <summary>Stream-ordered allocation (cuMemAllocAsync); Dispose frees it on the same stream.</summary>
    public static DeviceBuffer AllocateAsync(CudaContext context, long bytes, CudaStream stream)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        context.MakeCurrent();
        ulong p = 0;
        int st = bytes == 0 ? 0 : CuNative.cuMemAllocAsync(&p, (nuint)bytes, stream.Handle);
        if (st != CuConst.CUDA_SUCCESS) throw AllocError(context, st, "cuMemAllocAsync", bytes);
        return new DeviceBuffer(context, p, bytes, stream);
    }

    private static CudaException AllocError(CudaContext context, int status, string call, long bytes)
    {
        string free;
        try
        {
            var (f, t) = context.MemoryInfo();
            free = $"{Kiln.Cuda.Bytes.Format(f)} free of {Kiln.Cuda.Bytes.Format(t)}";
        }
        catch (CudaException) { free = "free memory unknown"; }
        return Cu.Error(status, call,
            $"Requested {bytes} bytes ({Kiln.Cuda.Bytes.Format(bytes)}) on device {context.Device.Index} ({context.Device.Name}); {free}");
    }

    public void CopyFrom<T>(ReadOnlySpan<T> source) where T : unmanaged
    {
        long n = CheckSize<T>(source.Length);
        Context.MakeCurrent();
        fixed (T* p = source) Cu.Check(CuNative.cuMemcpyHtoD_v2(Pointer, p, (nuint)n), "cuMemcpyHtoD_v2");
    }

    public void CopyTo<T>(Span<T> destination) where T : unmanaged
    {
        long n = CheckSize<T>(destination.Length);
        Context.MakeCurrent();
        fixed (T* p = destination) Cu.Check(CuNative.cuMemcpyDtoH_v2(p, Pointer, (nuint)n), "cuMemcpyDtoH_v2");
    }

    public T[] ToArray<T>() where T : unmanaged
    {
        var a = new T[Bytes / sizeof(T)];
        CopyTo<T>(a);
        return a;
    }

    public void CopyFrom(DeviceBuffer source, long bytes = -1)
    {
        if (bytes < 0) bytes = Math.Min(Bytes, source.Bytes);
        if (bytes > Bytes || bytes > source.Bytes) throw new ArgumentOutOfRangeException(nameof(bytes));
        Context.MakeCurrent();
        Cu.Check(CuNative.cuMemcpyDtoD_v2(Pointer, source.Pointer, (nuint)bytes), "cuMemcpyDtoD_v2");
    }

    /// <summary>Asynchronous host-to-device copy: the host memory must stay pinned in place (e.g. a
    /// pinned or fixed array) until the stream reaches the copy; with pageable memory the driver stages it.</summary>
    public void CopyFromAsync<T>(ReadOnlySpan<T> source, CudaStream stream) where T : unmanaged
    {
        long n = CheckSize<T>(source.Length);
        fixed (T* p = source) Cu.Check(CuNative.cuMemcpyHtoDAsync_v2(Pointer, p, (nuint)n, stream.Handle), "cuMemcpyHtoDAsync_v2");
    }

    /// <summary>Asynchronous device-to-host copy; synchronize the stream before reading the span.
    /// The destination must not move (pin it) until then.</summary>
    public void CopyToAsync<T>(Span<T> destination, CudaStream stream) where T : unmanaged
    {
        long n = CheckSize<T>(destination.Length);
        fixed (T* p = destination) Cu.Check(CuNative.cuMemcpyDtoHAsync_v2(p, Pointer, (nuint)n, stream.Handle), "cuMemcpyDtoHAsync_v2");
    }

    public void CopyFromAsync(DeviceBuffer source, CudaStream stream, long bytes = -1)
    {
        if (bytes < 0) bytes = Math.Min(Bytes, source.Bytes);
        Cu.Check(CuNative.cuMemcpyDtoDAsync_v2(Pointer, source.Pointer, (nuint)bytes, stream.Handle), "cuMemcpyDtoDAsync_v2");
    }

    /// <summary>Sets every byte to <paramref name="value"/>.</summary>
    public void Fill(byte value)
    {
        Context.MakeCurrent();
        Cu.Check(CuNative.cuMemsetD8_v2(Pointer, value, (nuint)Bytes), "cuMemsetD8_v2");
    }

    private long CheckSize<T>(int count) where T : unmanaged
    {
        long n = (long)count * sizeof(T);
        if (n > Bytes)
            throw new ArgumentException($"copy of {n} bytes does not fit the {Bytes}-byte device buffer");
        return n;
    }

    public void Dispose()
    {
        if (Pointer == 0) return;
        Context.MakeCurrent();
        if (_asyncStream is { Handle: not 0 } s) Cu.Check(CuNative.cuMemFreeAsync(Pointer, s.Handle), "cuMemFreeAsync");
        else Cu.Check(CuNative.cuMemFree_v2(Pointer), "cuMemFree_v2");
        Pointer = 0;
    }
}
