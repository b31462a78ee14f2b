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

    /// <summary>Work queued on this stream after this call waits for <paramref name="e"/> (captured: a graph edge).</summary>
    public void Wait(CudaEvent e) => Cu.Check(CuNative.cuStreamWaitEvent(Handle, e.Handle, 0), "cuStreamWaitEvent");

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

    /// <summary>Replaces the arguments of one kernel node for future launches (launches already queued keep theirs).</summary>
    internal unsafe void SetKernelArgs(IntPtr node, CudaKernel kernel, Dim3 grid, Dim3 block, int sharedBytes, ReadOnlySpan<ulong> args)
    {
        int n = args.Length;
        ulong* slots = stackalloc ulong[Math.Max(n, 1)];
        void** ptrs = stackalloc void*[Math.Max(n, 1)];
        for (int i = 0; i < n; i++) { slots[i] = args[i]; ptrs[i] = &slots[i]; }
        var p = new Native.KernelNodeParams
        {
            Func = kernel.Handle, GridX = grid.X, GridY = grid.Y, GridZ = grid.Z, BlockX = block.X, BlockY = block.Y, BlockZ = block.Z,
            SharedMemBytes = (uint)sharedBytes, KernelParams = ptrs,
        };
        Cu.Check(Native.CuNative.cuGraphExecKernelNodeSetParams_v2(Handle, node, &p), "cuGraphExecKernelNodeSetParams_v2", $"kernel '{kernel.Name}'");
    }

    /// <summary>The graph node the last operation queued on a capturing stream became.</summary>
    internal static unsafe IntPtr LastCapturedNode(CudaStream stream)
    {
        int status; ulong id; IntPtr graph; IntPtr* deps; IntPtr edges; nuint count;
        Cu.Check(Native.CuNative.cuStreamGetCaptureInfo_v3(stream.Handle, &status, &id, &graph, &deps, &edges, &count), "cuStreamGetCaptureInfo_v3");
        return count == 1 ? deps[0] : IntPtr.Zero;
    }

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        Cu.Check(Native.CuNative.cuGraphExecDestroy(Handle), "cuGraphExecDestroy");
        Handle = IntPtr.Zero;
    }
}
