// Tests that run everywhere (no GPU needed): library search errors, availability, status names.
using Kiln.Cuda;

namespace Kiln.Cuda.Tests;

public class NoGpuTests
{
    [Fact]
    public void Missing_library_error_lists_every_place_searched()
    {
        var dirs = CudaLibraries.ProbeDirectories();
        var e = Assert.Throws<CudaLibraryNotFoundException>(() =>
            CudaLibraries.LoadFirst("Fake library (libkiln_fake)", ["libkiln_fake.so.7", "libkiln_fake.so"], "Install nothing.", dirs));
        Assert.Contains("Fake library (libkiln_fake) could not be loaded", e.Message);
        Assert.Contains("Install nothing.", e.Message);
        Assert.Contains("libkiln_fake.so.7 via the system loader", e.Message);
        Assert.Contains("/usr/local/cuda/lib64/libkiln_fake.so.7", e.Message);
        Assert.Contains("/usr/local/cuda/targets/x86_64-linux/lib/libkiln_fake.so", e.Message);
        Assert.Contains("/usr/lib/x86_64-linux-gnu/libkiln_fake.so.7", e.Message);
        // Every soname through the loader, then every folder x soname.
        Assert.Equal(2 + dirs.Count * 2, e.Searched.Count);
    }

    [Fact]
    public void A_library_missing_from_the_loader_path_is_found_in_a_probed_folder()
    {
        var libm = new[] { "/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6" }
            .FirstOrDefault(File.Exists);
        Assert.SkipWhen(libm is null, "no libm.so.6 to copy on this machine");
        var dir = Gpu.TempCacheDir();
        try
        {
            File.Copy(libm!, Path.Combine(dir, "libkiln_probe_test.so.1"));
            File.WriteAllText(Path.Combine(dir, "libkiln_garbage.so.1"), "not an ELF file");

            var (handle, where) = CudaLibraries.LoadFirst("probe test", ["libkiln_probe_test.so.1"], "", ["/nonexistent/dir", dir]);
            Assert.NotEqual(IntPtr.Zero, handle);
            Assert.Equal(Path.Combine(dir, "libkiln_probe_test.so.1"), where);

            var e = Assert.Throws<CudaLibraryNotFoundException>(() =>
                CudaLibraries.LoadFirst("garbage test", ["libkiln_garbage.so.1"], "", [dir]));
            Assert.Contains(Path.Combine(dir, "libkiln_garbage.so.1") + ": exists but failed to load", e.Message);
        }
        finally { try { Directory.Delete(dir, recursive: true); } catch (IOException) { } }
    }

    [Fact]
    public void Probe_folders_cover_the_toolkit_and_system_locations()
    {
        var dirs = CudaLibraries.ProbeDirectories();
        Assert.Contains("/usr/local/cuda/targets/x86_64-linux/lib", dirs);
        Assert.Contains("/usr/local/cuda/lib64", dirs);
        Assert.Contains("/usr/lib/x86_64-linux-gnu", dirs);
        Assert.Equal(dirs.Count, dirs.Distinct().Count());
        Assert.Equal(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"], CudaLibraries.NvrtcSonames);
        Assert.Equal(["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"], CudaLibraries.CublasLtSonames);
    }

    [Fact]
    public void Without_a_gpu_IsAvailable_is_false_with_a_reason_and_calls_throw_CudaException()
    {
        if (CudaDevice.IsAvailable) Assert.Skip("a CUDA GPU is present: this test covers machines without one");
        Assert.False(CudaDevice.IsAvailable);
        Assert.False(string.IsNullOrWhiteSpace(CudaDevice.UnavailableReason));
        var e = Assert.ThrowsAny<CudaException>(() => CudaDevice.Count);
        Assert.Contains(e.Message, CudaDevice.UnavailableReason!);
        if (!CudaLibraries.TryLoad(CudaLibraryKind.Driver, out var err))
        {
            Assert.Contains("libcuda.so.1", CudaDevice.UnavailableReason);
            Assert.Contains("libcuda.so.1", err);
        }
    }

    [Fact]
    public void Status_names_and_messages()
    {
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", Cu.StatusName(2));
        Assert.Equal("CUDA_ERROR_NO_DEVICE", Cu.StatusName(100));
        Assert.Equal("CUDA_ERROR_ILLEGAL_ADDRESS", Cu.KnownName(700));
        Assert.Equal("CUresult 123456", Cu.KnownName(123456));
        Assert.Equal("NVRTC_ERROR_COMPILATION", Nvrtc.KnownName(6));
        Assert.Equal("NVRTC_ERROR_INVALID_OPTION", Nvrtc.KnownName(5));
        Assert.Equal("CUBLAS_STATUS_NOT_SUPPORTED", CublasLt.KnownName(15));
        Assert.Equal("CUBLAS_STATUS_INVALID_VALUE", CublasLt.StatusName(7));

        var e = Cu.Error(2, "cuMemAlloc_v2", "Requested 42 bytes");
        Assert.StartsWith("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (2): ", e.Message);
        Assert.EndsWith("Requested 42 bytes", e.Message);
        Assert.Equal("cuMemAlloc_v2", e.Call);
        Assert.Equal(2, e.Status);
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.StatusName);
        Cu.Check(0, "cuInit"); // success does not throw

        var c = new CudaException("nvrtcCompileProgram(k.cu)", 6, "NVRTC_ERROR_COMPILATION", "did not compile", null,
            "k.cu(3): error: identifier \"oops\" is undefined\n");
        Assert.Contains("NVRTC log:\nk.cu(3): error: identifier \"oops\" is undefined", c.Message);
        Assert.Equal("k.cu(3): error: identifier \"oops\" is undefined\n", c.Log);

        Assert.Equal("13.0", Cu.FormatVersion(13000));
        Assert.Equal("12.8", Cu.FormatVersion(12080));
        Assert.Equal("13.1.0", CublasLt.FormatVersion(130100));
    }

    [Fact]
    public void Byte_sizes_are_readable()
    {
        Assert.Equal("512 B", Bytes.Format(512));
        Assert.Equal("1.5 KiB", Bytes.Format(1536));
        Assert.Equal("9.09 TiB", Bytes.Format(10_000_000_000_000));
    }
}

[Collection("env")]
public class CacheDirectoryTests
{
    [Fact]
    public void KILN_CACHE_DIR_overrides_the_cache_folder_and_off_disables_it()
    {
        var old = Environment.GetEnvironmentVariable("KILN_CACHE_DIR");
        try
        {
            Environment.SetEnvironmentVariable("KILN_CACHE_DIR", "/tmp/kiln-cache-test");
            Assert.Equal("/tmp/kiln-cache-test", NvrtcCompiler.DefaultCacheDirectory);
            Assert.Equal("/tmp/kiln-cache-test", new NvrtcCompiler().CacheDirectory);
            Environment.SetEnvironmentVariable("KILN_CACHE_DIR", "off");
            Assert.Null(new NvrtcCompiler().CacheDirectory);
            Environment.SetEnvironmentVariable("KILN_CACHE_DIR", null);
            Assert.EndsWith("kiln", NvrtcCompiler.DefaultCacheDirectory);
        }
        finally { Environment.SetEnvironmentVariable("KILN_CACHE_DIR", old); }
    }
}

[CollectionDefinition("env", DisableParallelization = true)]
public sealed class EnvCollection;
