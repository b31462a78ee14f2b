// Shared helpers for the GPU tests: skip with the reason when no GPU is present; kernels used by several tests.
using Kiln.Cuda;

namespace Kiln.Cuda.Tests;

/// <summary>GPU tests run one after another: they share the device and a stream capture must not see
/// another test's work.</summary>
[CollectionDefinition("gpu", DisableParallelization = true)]
public sealed class GpuCollection;

internal static class Gpu
{
    /// <summary>The primary context of device 0, current on this thread; skips the test (with the reason)
    /// when CUDA is unavailable.</summary>
    public static CudaContext Context()
    {
        Assert.SkipUnless(CudaDevice.IsAvailable, $"CUDA unavailable: {CudaDevice.UnavailableSummary}");
        return CudaContext.Get(0);
    }

    /// <summary>A fresh, empty cache folder for one test (never the user's ~/.cache/kiln).</summary>
    public static string TempCacheDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "kiln-cuda-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }

    public const string AxpbSource = """
        extern "C" __global__ void axpb(const float* __restrict__ x, float* __restrict__ y, float a, float b, long long n)
        {
            long long stride = (long long)gridDim.x * blockDim.x;
            for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
                y[i] = a * x[i] + b;
        }

        extern "C" __global__ void add_scalar(float* x, float v, int n)
        {
            for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
                x[i] += v;
        }
        """;

    public static float[] Random(int n, int seed, float scale = 1f)
    {
        var r = new System.Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }
}
