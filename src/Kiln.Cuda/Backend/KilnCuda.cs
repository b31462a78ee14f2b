using Kiln.Runtime;

namespace Kiln.Cuda;

/// <summary>Connects the CUDA backend to the engine: after <see cref="Register"/>, tensors can live on
/// <c>Device.Cuda(n)</c> (and <c>KILN_DEVICE=cuda</c> works) wherever a GPU and driver are present.</summary>
public static class KilnCuda
{
    private static int _registered;

    public static void Register()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 1) return;
        Backends.Register(DeviceKind.Cuda, i => new Backend.CudaBackend(i), () => CudaDevice.IsAvailable ? null : CudaDevice.UnavailableReason);
    }

    /// <summary>Memory held by Kiln on <c>cuda:<paramref name="index"/></c>: the caching allocator and the captured graphs.</summary>
    public static CudaMemoryStats MemoryStats(int index = 0)
    {
        Register();
        return ((Backend.CudaBackend)Backends.For(Device.Cuda(index))).MemoryStats();
    }

    /// <summary>Gives the allocator's cached (free) blocks back to the driver.</summary>
    public static void EmptyCache(int index = 0)
    {
        Register();
        ((Backend.CudaBackend)Backends.For(Device.Cuda(index))).EmptyCache();
    }
}
