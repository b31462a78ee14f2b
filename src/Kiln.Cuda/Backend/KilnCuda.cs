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
}
