// CUDA events: ordering points on a stream and GPU-side timing.
using Kiln.Cuda.Native;

namespace Kiln.Cuda;

public sealed unsafe class CudaEvent : IDisposable
{
    public CudaContext Context { get; }
    public IntPtr Handle { get; private set; }

    public CudaEvent(CudaContext context, bool timing = true)
    {
        Context = context;
        context.MakeCurrent();
        IntPtr e;
        Cu.Check(CuNative.cuEventCreate(&e, timing ? CuConst.CU_EVENT_DEFAULT : CuConst.CU_EVENT_DISABLE_TIMING), "cuEventCreate");
        Handle = e;
    }

    public void Record(CudaStream? stream = null) => Cu.Check(CuNative.cuEventRecord(Handle, CudaStream.Of(stream)), "cuEventRecord");

    public void Synchronize() => Cu.Check(CuNative.cuEventSynchronize(Handle), "cuEventSynchronize");

    /// <summary>Milliseconds between two recorded, completed events (cuEventElapsedTime).</summary>
    public static float ElapsedMs(CudaEvent start, CudaEvent end)
    {
        var (fn, name) = ElapsedExport.Value;
        float ms;
        Cu.Check(((delegate* unmanaged<float*, IntPtr, IntPtr, int>)fn)(&ms, start.Handle, end.Handle), name);
        return ms;
    }

    // CUDA 12.8+ drivers export cuEventElapsedTime_v2 (what CUDA 13's header maps the name to); older ones only v1.
    private static readonly Lazy<(IntPtr Fn, string Name)> ElapsedExport = new(() =>
    {
        var p = CudaLibraries.TryGetExport(CudaLibraryKind.Driver, "cuEventElapsedTime_v2");
        if (p != IntPtr.Zero) return (p, "cuEventElapsedTime_v2");
        p = CudaLibraries.TryGetExport(CudaLibraryKind.Driver, "cuEventElapsedTime");
        if (p != IntPtr.Zero) return (p, "cuEventElapsedTime");
        throw new EntryPointNotFoundException("the CUDA driver exports neither cuEventElapsedTime_v2 nor cuEventElapsedTime");
    });

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        Context.MakeCurrent();
        Cu.Check(CuNative.cuEventDestroy_v2(Handle), "cuEventDestroy_v2");
        Handle = IntPtr.Zero;
    }
}
