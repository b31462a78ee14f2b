// Loaded modules (cubin or PTX images) and their kernels; launches with a packed argument list.
using System.Text;
using Kiln.Cuda.Native;

namespace Kiln.Cuda;

public sealed unsafe class CudaModule : IDisposable
{
    public CudaContext Context { get; }
    public IntPtr Handle { get; private set; }

    private CudaModule(CudaContext context, IntPtr handle) { Context = context; Handle = handle; }

    /// <summary>Loads a cubin (or a NUL-terminated PTX image) into the context.</summary>
    public static CudaModule Load(CudaContext context, ReadOnlySpan<byte> image)
    {
        context.MakeCurrent();
        IntPtr m;
        fixed (byte* p = image) Cu.Check(CuNative.cuModuleLoadData(&m, p), "cuModuleLoadData", $"image of {image.Length} bytes");
        return new CudaModule(context, m);
    }

    /// <summary>The <c>extern "C" __global__</c> function <paramref name="name"/>.</summary>
    public CudaKernel GetKernel(string name)
    {
        var bytes = Encoding.UTF8.GetBytes(name + "\0");
        IntPtr f;
        fixed (byte* n = bytes) Cu.Check(CuNative.cuModuleGetFunction(&f, Handle, n), "cuModuleGetFunction", $"kernel '{name}'");
        return new CudaKernel(this, name, f);
    }

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        Context.MakeCurrent();
        Cu.Check(CuNative.cuModuleUnload(Handle), "cuModuleUnload");
        Handle = IntPtr.Zero;
    }
}

public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    public static implicit operator Dim3(int x) => new(checked((uint)x));
    public static implicit operator Dim3(uint x) => new(x);
}

/// <summary>One kernel argument: a scalar or a device pointer, held in an 8-byte slot (the driver reads
/// the parameter's own size from the slot's start, little-endian).</summary>
public readonly struct KernelArg
{
    internal readonly ulong Bits;
    private KernelArg(ulong bits) => Bits = bits;

    public static implicit operator KernelArg(int v) => new((uint)v);
    public static implicit operator KernelArg(uint v) => new(v);
    public static implicit operator KernelArg(long v) => new((ulong)v);
    public static implicit operator KernelArg(ulong v) => new(v);
    public static implicit operator KernelArg(float v) => new(BitConverter.SingleToUInt32Bits(v));
    public static implicit operator KernelArg(double v) => new(BitConverter.DoubleToUInt64Bits(v));
    public static implicit operator KernelArg(DeviceBuffer b) => new(b.Pointer);
    public static KernelArg Pointer(ulong devicePointer) => new(devicePointer);
}

public sealed unsafe class CudaKernel
{
    public CudaModule Module { get; }
    public string Name { get; }
    public IntPtr Handle { get; }

    internal CudaKernel(CudaModule module, string name, IntPtr handle) { Module = module; Name = name; Handle = handle; }

    /// <summary>Told of every launch this thread makes while it captures a CUDA Graph (null otherwise).</summary>
    [ThreadStatic] internal static ILaunchRecorder? Recorder;

    /// <summary>Queues the kernel on <paramref name="stream"/> (null: the legacy default stream).</summary>
    public void Launch(Dim3 grid, Dim3 block, int sharedBytes, CudaStream? stream, params ReadOnlySpan<KernelArg> args)
    {
        int n = args.Length;
        ulong* slots = stackalloc ulong[Math.Max(n, 1)];
        void** ptrs = stackalloc void*[Math.Max(n, 1)];
        for (int i = 0; i < n; i++) { slots[i] = args[i].Bits; ptrs[i] = &slots[i]; }
        Cu.Check(CuNative.cuLaunchKernel(Handle, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, (uint)sharedBytes,
            CudaStream.Of(stream), ptrs, null), "cuLaunchKernel",
            $"kernel '{Name}', grid ({grid.X},{grid.Y},{grid.Z}), block ({block.X},{block.Y},{block.Z}), {sharedBytes} B shared");
        Recorder?.Launched(this, grid, block, sharedBytes, stream, args);
    }

    /// <summary>Queues the kernel with its parameters given as one packed buffer (CU_LAUNCH_PARAM_BUFFER_POINTER): for a
    /// kernel taking a struct by value. Not for captures (its arguments could not be re-pointed), which it refuses.</summary>
    public void LaunchPacked(Dim3 grid, Dim3 block, int sharedBytes, CudaStream? stream, ReadOnlySpan<byte> parameters)
    {
        if (Recorder is not null) throw new InvalidOperationException($"kernel '{Name}': a packed-parameter launch cannot be captured");
        nuint size = (nuint)parameters.Length;
        void** extra = stackalloc void*[5];
        fixed (byte* p = parameters)
        {
            extra[0] = (void*)1; extra[1] = p;        // CU_LAUNCH_PARAM_BUFFER_POINTER
            extra[2] = (void*)2; extra[3] = &size;    // CU_LAUNCH_PARAM_BUFFER_SIZE
            extra[4] = null;                          // CU_LAUNCH_PARAM_END
            Cu.Check(CuNative.cuLaunchKernel(Handle, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, (uint)sharedBytes,
                CudaStream.Of(stream), null, extra), "cuLaunchKernel",
                $"kernel '{Name}' (packed parameters, {parameters.Length} B), grid ({grid.X},{grid.Y},{grid.Z}), block ({block.X},{block.Y},{block.Z})");
        }
    }
}

/// <summary>Sees the kernel launches of a capture, so their graph nodes can be re-pointed later.</summary>
internal interface ILaunchRecorder
{
    void Launched(CudaKernel kernel, Dim3 grid, Dim3 block, int sharedBytes, CudaStream? stream, ReadOnlySpan<KernelArg> args);
}
