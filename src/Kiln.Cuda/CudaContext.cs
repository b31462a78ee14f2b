// The device's primary context: retained once per process and made current on the threads that use it.
using Kiln.Cuda.Native;

namespace Kiln.Cuda;

public sealed unsafe class CudaContext
{
    public CudaDevice Device { get; }
    public IntPtr Handle { get; }

    [ThreadStatic] private static IntPtr _currentOnThread;

    private CudaContext(CudaDevice device)
    {
        Device = device;
        IntPtr ctx;
        Cu.Check(CuNative.cuDevicePrimaryCtxRetain(&ctx, device.Handle), "cuDevicePrimaryCtxRetain", $"device {device.Index}");
        Handle = ctx;
    }

    private static readonly Lock Gate = new();
    private static readonly Dictionary<int, CudaContext> Contexts = new();

    /// <summary>The primary context of device <paramref name="device"/> (retained for the life of the
    /// process), made current on the calling thread.</summary>
    public static CudaContext Get(int device = 0)
    {
        CudaContext c;
        lock (Gate)
        {
            if (!Contexts.TryGetValue(device, out c!))
                Contexts[device] = c = new CudaContext(CudaDevice.Get(device));
        }
        c.MakeCurrent();
        return c;
    }

    /// <summary>Makes this context current on the calling thread (a no-op when it already is).</summary>
    public void MakeCurrent()
    {
        if (_currentOnThread == Handle)
        {
            // Another library may have switched contexts behind our back; check cheaply.
            IntPtr cur;
            if (CuNative.cuCtxGetCurrent(&cur) == CuConst.CUDA_SUCCESS && cur == Handle) return;
        }
        Cu.Check(CuNative.cuCtxSetCurrent(Handle), "cuCtxSetCurrent");
        _currentOnThread = Handle;
    }

    /// <summary>Waits for all work in this context.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        Cu.Check(CuNative.cuCtxSynchronize(), "cuCtxSynchronize");
    }

    /// <summary>Free and total device memory in bytes (cuMemGetInfo_v2).</summary>
    public (long Free, long Total) MemoryInfo()
    {
        MakeCurrent();
        nuint free, total;
        Cu.Check(CuNative.cuMemGetInfo_v2(&free, &total), "cuMemGetInfo_v2");
        return ((long)free, (long)total);
    }
}
