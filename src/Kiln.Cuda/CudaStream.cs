// A CUDA stream (non-blocking by default: it does not synchronize with the legacy default stream, which
// stream capture requires), with stream capture into a CUDA graph.
using Kiln.Cuda.Native;

namespace Kiln.Cuda;

public sealed unsafe class CudaStream : IDisposable
{
    public CudaContext Context { get; }
    public IntPtr Handle { get; private set; }

    public CudaStream(CudaContext context, bool nonBlocking = true)
    {
        Context = context;
        context.MakeCurrent();
        IntPtr s;
        Cu.Check(CuNative.cuStreamCreate(&s, nonBlocking ? CuConst.CU_STREAM_NON_BLOCKING : CuConst.CU_STREAM_DEFAULT), "cuStreamCreate");
        Handle = s;
    }

    public void Synchronize() => Cu.Check(CuNative.cuStreamSynchronize(Handle), "cuStreamSynchronize");

    /// <summary>Starts capturing the work queued on this stream into a graph (nothing runs until the graph
    /// is launched). ThreadLocal mode: other threads' CUDA calls are not affected.</summary>
    public void BeginCapture(StreamCaptureMode mode = StreamCaptureMode.ThreadLocal) =>
        Cu.Check(CuNative.cuStreamBeginCapture_v2(Handle, (int)mode), "cuStreamBeginCapture_v2");

    /// <summary>Ends the capture started by BeginCapture and returns the captured graph.</summary>
    public CudaGraph EndCapture()
    {
        IntPtr g;
        Cu.Check(CuNative.cuStreamEndCapture(Handle, &g), "cuStreamEndCapture");
        return new CudaGraph(g);
    }

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        Context.MakeCurrent();
        Cu.Check(CuNative.cuStreamDestroy_v2(Handle), "cuStreamDestroy_v2");
        Handle = IntPtr.Zero;
    }

    internal static IntPtr Of(CudaStream? s) => s?.Handle ?? IntPtr.Zero;
}

/// <summary>A captured CUDA graph (not yet executable).</summary>
public sealed unsafe class CudaGraph : IDisposable
{
    public IntPtr Handle { get; private set; }
    internal CudaGraph(IntPtr handle) => Handle = handle;

    /// <summary>Number of nodes in the graph (e.g. one per captured kernel launch).</summary>
    public int NodeCount
    {
        get
        {
            nuint n = 0;
            Cu.Check(CuNative.cuGraphGetNodes(Handle, null, &n), "cuGraphGetNodes");
            return (int)n;
        }
    }

    public CudaGraphExec Instantiate(ulong flags = 0)
    {
        IntPtr exec;
        Cu.Check(CuNative.cuGraphInstantiateWithFlags(&exec, Handle, flags), "cuGraphInstantiateWithFlags");
        return new CudaGraphExec(exec);
    }

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        Cu.Check(CuNative.cuGraphDestroy(Handle), "cuGraphDestroy");
        Handle = IntPtr.Zero;
    }
}

/// <summary>An instantiated graph: launched as one submission.</summary>
public sealed class CudaGraphExec : IDisposable
{
    public IntPtr Handle { get; private set; }
    internal CudaGraphExec(IntPtr handle) => Handle = handle;

    public void Launch(CudaStream stream) => Cu.Check(Native.CuNative.cuGraphLaunch(Handle, stream.Handle), "cuGraphLaunch");

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        Cu.Check(Native.CuNative.cuGraphExecDestroy(Handle), "cuGraphExecDestroy");
        Handle = IntPtr.Zero;
    }
}
