// Helpers for the CudaKernels tests: one shared CudaKernels (each module compiled once per process), uploads,
// host bf16 conversion and tolerance checks that name the first bad element.
using Kiln.Cuda;

namespace Kiln.Cuda.Tests;

internal static class K
{
    private static CudaKernels? _kernels;
    private static readonly Lock Gate = new();

    /// <summary>The GPU context (skips without a GPU) and the shared kernel launcher.</summary>
    public static (CudaContext Ctx, CudaKernels Kernels, CudaStream Stream) Setup()
    {
        var ctx = Gpu.Context();
        lock (Gate) _kernels ??= new CudaKernels(ctx);
        return (ctx, _kernels, new CudaStream(ctx));
    }

    public static DeviceBuffer Up<T>(CudaContext ctx, T[] data) where T : unmanaged
    {
        var b = DeviceBuffer.Allocate<T>(ctx, Math.Max(1, data.Length));
        if (data.Length > 0) b.CopyFrom<T>(data);
        return b;
    }

    public static DeviceBuffer Zeros<T>(CudaContext ctx, long n) where T : unmanaged
    {
        var b = DeviceBuffer.Allocate<T>(ctx, Math.Max(1, n));
        b.Fill(0);
        return b;
    }

    public static T[] Down<T>(DeviceBuffer b, long n) where T : unmanaged
    {
        var a = new T[n];
        b.CopyTo<T>(a);
        return a;
    }

    public static ushort ToBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u);
        u += 0x7fffu + ((u >> 16) & 1u);
        return (ushort)(u >> 16);
    }

    public static float FromBf16(ushort h) => BitConverter.UInt32BitsToSingle((uint)h << 16);
    public static ushort[] ToBf16(float[] a) => Array.ConvertAll(a, ToBf16);
    public static float[] FromBf16(ushort[] a) => Array.ConvertAll(a, FromBf16);

    /// <summary>|actual − expected| ≤ tol · max(1, |expected|) everywhere (NaN must match NaN).</summary>
    public static void Close(string what, double[] expected, float[] actual, double tol)
    {
        Assert.True(expected.Length <= actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (double.IsNaN(e)) { Assert.True(double.IsNaN(a), $"{what}[{i}] = {a}, expected NaN"); continue; }
            double err = Math.Abs(a - e) / Math.Max(1, Math.Abs(e));
            worst = Math.Max(worst, err);
            if (!(err <= tol)) Assert.Fail($"{what}[{i}] = {a}, expected {e} (relative error {err:g3} > {tol:g3})");
        }
    }

    public static double[] D(float[] a) => Array.ConvertAll(a, x => (double)x);
}
