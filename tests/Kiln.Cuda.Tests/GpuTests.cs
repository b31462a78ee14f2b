// Tests that need an NVIDIA GPU (skipped, with the reason, elsewhere): device query, memory, NVRTC
// compile + launch, the kernel cache, cuBLASLt GEMMs, CUDA graph capture and replay, events, OOM.
using Kiln;
using Kiln.Cuda;

namespace Kiln.Cuda.Tests;

[Collection("gpu")]
public class GpuTests(ITestOutputHelper output)
{
    [Fact]
    public void Device_query()
    {
        var ctx = Gpu.Context();
        var d = ctx.Device;
        Assert.True(CudaDevice.Count >= 1);
        Assert.Equal(0, d.Index);
        Assert.False(string.IsNullOrWhiteSpace(d.Name));
        Assert.True(d.ComputeCapability.Major >= 5, $"compute capability {d.ComputeCapability}");
        Assert.True(d.SmCount > 0);
        Assert.True(d.TotalMemory > 1L << 30, $"total memory {d.TotalMemory}");
        Assert.True(d.MaxThreadsPerBlock >= 1024);
        Assert.Matches("^sm_[0-9]+$", d.Arch);
        Assert.True(Cu.DriverVersion >= 11000, $"driver {Cu.DriverVersion}");
        var (free, total) = ctx.MemoryInfo();
        Assert.InRange(free, 1, total);
        var (nvMajor, _) = Nvrtc.Version;
        Assert.True(nvMajor >= 11);
        Assert.True(CublasLt.Version >= 110000, $"cuBLASLt {CublasLt.Version}");
        output.WriteLine($"{d}; driver {Cu.FormatVersion(Cu.DriverVersion)}; NVRTC {Nvrtc.Version}; cuBLASLt {CublasLt.FormatVersion(CublasLt.Version)}");
        output.WriteLine($"driver from {CudaLibraries.LoadedFrom(CudaLibraryKind.Driver)}, NVRTC from {CudaLibraries.LoadedFrom(CudaLibraryKind.Nvrtc)}, cuBLASLt from {CudaLibraries.LoadedFrom(CudaLibraryKind.CublasLt)}");
    }

    [Fact]
    public void Alloc_copy_round_trip()
    {
        var ctx = Gpu.Context();
        const int n = 1_000_003;
        var x = Gpu.Random(n, 1);
        using var a = DeviceBuffer.Allocate<float>(ctx, n);
        using var b = DeviceBuffer.Allocate<float>(ctx, n);
        a.CopyFrom<float>(x);
        b.CopyFrom(a);
        Assert.Equal(x, b.ToArray<float>());
        b.Fill(0);
        Assert.All(b.ToArray<float>(), v => Assert.Equal(0f, v));

        using var stream = new CudaStream(ctx);
        using var c = DeviceBuffer.AllocateAsync(ctx, (long)n * 4, stream);
        c.CopyFromAsync(a, stream);
        var back = new float[n];
        c.CopyToAsync<float>(back, stream);
        stream.Synchronize();
        Assert.Equal(x, back);
        Assert.Throws<ArgumentException>(() => a.CopyFrom<float>(new float[n + 1]));
    }

    [Fact]
    public void Nvrtc_compile_and_launch_elementwise_kernel()
    {
        var ctx = Gpu.Context();
        var compiler = new NvrtcCompiler(Gpu.TempCacheDir());
        var cubin = compiler.Compile(Gpu.AxpbSource, "axpb.cu", ctx.Device.Arch);
        Assert.Equal(1, compiler.Compilations);
        using var module = CudaModule.Load(ctx, cubin);
        var kernel = module.GetKernel("axpb");

        const int n = 1_000_003;
        var x = Gpu.Random(n, 2, 10f);
        using var dx = DeviceBuffer.Allocate<float>(ctx, n);
        using var dy = DeviceBuffer.Allocate<float>(ctx, n);
        dx.CopyFrom<float>(x);
        dy.Fill(0xFF);
        float a = 1.75f, b = -0.5f;
        // Fewer blocks than elements / 256, so the grid-stride loop is exercised.
        int blocks = Math.Min((n + 255) / 256, ctx.Device.SmCount * 4);
        kernel.Launch(blocks, 256, 0, null, dx, dy, a, b, (long)n);
        var y = dy.ToArray<float>();
        for (int i = 0; i < n; i++)
        {
            float expected = a * x[i] + b;
            Assert.True(Math.Abs(y[i] - expected) <= 1e-6f * Math.Max(1f, Math.Abs(expected)), $"y[{i}] = {y[i]}, expected {expected}");
        }
    }

    [Fact]
    public void Compile_error_carries_the_nvrtc_log()
    {
        var ctx = Gpu.Context();
        var compiler = new NvrtcCompiler(Gpu.TempCacheDir());
        const string bad = "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }";
        var e = Assert.Throws<CudaException>(() => compiler.Compile(bad, "broken.cu", ctx.Device.Arch));
        Assert.Equal("NVRTC_ERROR_COMPILATION", e.StatusName);
        Assert.NotNull(e.Log);
        Assert.Contains("undefined_name", e.Log);
        Assert.Contains("broken.cu", e.Message);
        Assert.Contains("undefined_name", e.Message);
        Assert.Equal(0, compiler.Compilations);
        output.WriteLine(e.Message);
    }

    [Fact]
    public void Rejected_option_is_named()
    {
        var ctx = Gpu.Context();
        var compiler = new NvrtcCompiler(Gpu.TempCacheDir());
        var e = Assert.Throws<CudaException>(() => compiler.Compile(Gpu.AxpbSource, "axpb.cu", ctx.Device.Arch, "--no-such-option"));
        Assert.StartsWith("NVRTC_ERROR", e.StatusName);
        Assert.Contains("--no-such-option", e.Message);
    }

    [Fact]
    public void Disk_cache_skips_nvrtc_in_a_new_compiler()
    {
        var ctx = Gpu.Context();
        var dir = Gpu.TempCacheDir();
        var first = new NvrtcCompiler(dir);
        var cubin1 = first.Compile(Gpu.AxpbSource, "axpb.cu", ctx.Device.Arch, "--use_fast_math");
        Assert.Equal((1, 0), (first.Compilations, first.CacheHits));

        var second = new NvrtcCompiler(dir);
        var cubin2 = second.Compile(Gpu.AxpbSource, "axpb.cu", ctx.Device.Arch, "--use_fast_math");
        Assert.Equal((0, 1), (second.Compilations, second.CacheHits));
        Assert.Equal(cubin1, cubin2);
        var files = Directory.GetFiles(Path.Combine(dir, "kernels"));
        Assert.Single(files);
        Assert.EndsWith(".cubin", files[0]);

        // Different options: a different entry, compiled.
        second.Compile(Gpu.AxpbSource, "axpb.cu", ctx.Device.Arch);
        Assert.Equal(1, second.Compilations);
        using var module = CudaModule.Load(ctx, cubin2);
        module.GetKernel("axpb");
        var missing = Assert.Throws<CudaException>(() => module.GetKernel("no_such_kernel"));
        Assert.Equal("CUDA_ERROR_NOT_FOUND", missing.StatusName);
        Assert.Contains("no_such_kernel", missing.Message);
    }

    [Fact]
    public void CublasLt_gemm_fp32_row_major()
    {
        var ctx = Gpu.Context();
        const int m = 257, n = 129, k = 65;
        var a = Gpu.Random(m * k, 3);
        var b = Gpu.Random(k * n, 4);
        using var lt = new CublasLt(ctx);
        using var da = DeviceBuffer.Allocate<float>(ctx, m * k);
        using var db = DeviceBuffer.Allocate<float>(ctx, k * n);
        using var dd = DeviceBuffer.Allocate<float>(ctx, m * n);
        da.CopyFrom<float>(a);
        db.CopyFrom<float>(b);
        lt.MatmulRowMajor(m, n, k, CudaDataType.R32F, da.Pointer, db.Pointer, dd.Pointer);
        var d = dd.ToArray<float>();
        var expected = NaiveMatmul(a, b, m, n, k);
        AssertClose(expected, d, 1e-4);
    }

    [Fact]
    public void CublasLt_gemm_bf16_row_major()
    {
        var ctx = Gpu.Context();
        const int m = 257, n = 129, k = 65;
        var a = Gpu.Random(m * k, 5).Select(BFloat16.FromSingle).ToArray();
        var b = Gpu.Random(k * n, 6).Select(BFloat16.FromSingle).ToArray();
        using var lt = new CublasLt(ctx);
        using var da = DeviceBuffer.Allocate<ushort>(ctx, m * k);
        using var db = DeviceBuffer.Allocate<ushort>(ctx, k * n);
        using var dd = DeviceBuffer.Allocate<ushort>(ctx, m * n);
        da.CopyFrom<ushort>(a.Select(v => v.Bits).ToArray());
        db.CopyFrom<ushort>(b.Select(v => v.Bits).ToArray());
        lt.MatmulRowMajor(m, n, k, CudaDataType.R16BF, da.Pointer, db.Pointer, dd.Pointer);
        var d = dd.ToArray<ushort>().Select(bits => BFloat16.FromBits(bits).ToSingle()).ToArray();
        var expected = NaiveMatmul(a.Select(v => v.ToSingle()).ToArray(), b.Select(v => v.ToSingle()).ToArray(), m, n, k);
        AssertClose(expected, d, 2e-2);
    }

    [Fact]
    public void Stream_capture_into_a_graph_replays()
    {
        var ctx = Gpu.Context();
        var compiler = new NvrtcCompiler(Gpu.TempCacheDir());
        using var module = CudaModule.Load(ctx, compiler.Compile(Gpu.AxpbSource, "axpb.cu", ctx.Device.Arch));
        var add = module.GetKernel("add_scalar");
        const int n = 100_000;
        var x = Gpu.Random(n, 7);
        using var dx = DeviceBuffer.Allocate<float>(ctx, n);
        dx.CopyFrom<float>(x);

        using var stream = new CudaStream(ctx);
        stream.BeginCapture();
        for (int i = 0; i < 10; i++) add.Launch((n + 255) / 256, 256, 0, stream, dx, 0.5f, n);
        using var graph = stream.EndCapture();
        Assert.Equal(10, graph.NodeCount);
        stream.Synchronize();
        Assert.Equal(x, dx.ToArray<float>()); // capture ran nothing

        using var exec = graph.Instantiate();
        for (int r = 0; r < 3; r++) exec.Launch(stream);
        stream.Synchronize();
        var y = dx.ToArray<float>();
        for (int i = 0; i < n; i++) Assert.Equal(x[i] + 15f, y[i], 1e-3f);
    }

    [Fact]
    public void Event_timing_is_positive()
    {
        var ctx = Gpu.Context();
        var compiler = new NvrtcCompiler(Gpu.TempCacheDir());
        using var module = CudaModule.Load(ctx, compiler.Compile(Gpu.AxpbSource, "axpb.cu", ctx.Device.Arch));
        var add = module.GetKernel("add_scalar");
        const int n = 1 << 22;
        using var dx = DeviceBuffer.Allocate<float>(ctx, n);
        dx.Fill(0);
        using var stream = new CudaStream(ctx);
        using var start = new CudaEvent(ctx);
        using var end = new CudaEvent(ctx);
        start.Record(stream);
        for (int i = 0; i < 20; i++) add.Launch((n + 255) / 256, 256, 0, stream, dx, 1f, n);
        end.Record(stream);
        end.Synchronize();
        float ms = CudaEvent.ElapsedMs(start, end);
        output.WriteLine($"20 launches over {n} floats: {ms:F3} ms");
        Assert.True(ms > 0, $"elapsed {ms} ms");
        Assert.Equal(20f, dx.ToArray<float>()[n - 1]);
    }

    [Fact]
    public void Out_of_memory_names_the_requested_size()
    {
        var ctx = Gpu.Context();
        const long tenTB = 10_000_000_000_000;
        var e = Assert.Throws<CudaException>(() => DeviceBuffer.Allocate(ctx, tenTB));
        output.WriteLine(e.Message);
        Assert.Equal("cuMemAlloc_v2", e.Call);
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.StatusName);
        Assert.Contains("Requested 10000000000000 bytes (9.09 TiB)", e.Message);
        Assert.Contains("free of", e.Message);
        // The device is still usable afterwards.
        using var ok = DeviceBuffer.Allocate(ctx, 1 << 20);
    }

    private static double[] NaiveMatmul(float[] a, float[] b, int m, int n, int k)
    {
        var d = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double)a[i * k + p] * b[p * n + j];
                d[i * n + j] = s;
            }
        return d;
    }

    private static void AssertClose(double[] expected, float[] actual, double rel)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = rel * Math.Max(1.0, Math.Abs(expected[i]));
            Assert.True(Math.Abs(actual[i] - expected[i]) <= tol, $"[{i}] = {actual[i]}, expected {expected[i]} (tolerance {tol})");
        }
    }
}
