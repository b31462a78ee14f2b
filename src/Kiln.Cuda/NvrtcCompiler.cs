// CUDA C -> cubin through NVRTC, with an on-disk cache so a second process compiles nothing.
// Cache: $KILN_CACHE_DIR, else ~/.cache/kiln (XDG_CACHE_HOME honoured), file kernels/<sha256>.cubin where
// the hash covers the source, program name, options, architecture, driver version and NVRTC version.
// Entries are written to a temporary file and renamed into place, so readers never see a partial file.
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Kiln.Cuda.Native;

namespace Kiln.Cuda;

public sealed unsafe class NvrtcCompiler
{
    /// <summary>The cache folder, or null when caching is off (KILN_CACHE_DIR=off).</summary>
    public string? CacheDirectory { get; }

    private int _compilations, _cacheHits;
    /// <summary>How many times this instance ran NVRTC.</summary>
    public int Compilations => Volatile.Read(ref _compilations);
    /// <summary>How many Compile calls this instance answered from the disk cache.</summary>
    public int CacheHits => Volatile.Read(ref _cacheHits);

    /// <param name="cacheDirectory">null: <see cref="DefaultCacheDirectory"/>.</param>
    public NvrtcCompiler(string? cacheDirectory = null) => CacheDirectory = cacheDirectory ?? DefaultCacheDirectory;

    /// <summary>KILN_CACHE_DIR (the value <c>off</c> disables the cache), else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln.</summary>
    public static string? DefaultCacheDirectory
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("KILN_CACHE_DIR");
            if (!string.IsNullOrWhiteSpace(env)) return env.Trim() == "off" ? null : env.Trim();
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            if (!string.IsNullOrWhiteSpace(xdg)) return Path.Combine(xdg, "kiln");
            var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            return string.IsNullOrEmpty(home) ? Path.Combine(Path.GetTempPath(), "kiln-cache") : Path.Combine(home, ".cache", "kiln");
        }
    }

    /// <summary>Compiles to a cubin for <paramref name="arch"/> (e.g. <c>sm_90</c>; see CudaDevice.Arch).
    /// <paramref name="options"/> are extra NVRTC options (e.g. <c>--use_fast_math</c>); the architecture
    /// option is added here. Compile errors throw CudaException with the NVRTC log.</summary>
    public byte[] Compile(string source, string name, string arch, params string[] options) =>
        CompileCached(source, name, arch, options, ptx: false);

    /// <summary>Compiles to NUL-terminated PTX for <paramref name="arch"/> (e.g. <c>compute_90</c>).</summary>
    public byte[] CompileToPtx(string source, string name, string arch, params string[] options) =>
        CompileCached(source, name, arch, options, ptx: true);

    private byte[] CompileCached(string source, string name, string arch, string[] options, bool ptx)
    {
        string? path = null;
        if (CacheDirectory is not null)
        {
            path = Path.Combine(CacheDirectory, "kernels", CacheKey(source, name, arch, options, ptx) + (ptx ? ".ptx" : ".cubin"));
            try
            {
                if (File.Exists(path))
                {
                    var cached = File.ReadAllBytes(path);
                    if (cached.Length > 0) { Interlocked.Increment(ref _cacheHits); return cached; }
                }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        var image = CompileUncached(source, name, arch, options, ptx);
        Interlocked.Increment(ref _compilations);
        if (path is not null) TryWrite(path, image);
        return image;
    }

    internal static string CacheKey(string source, string name, string arch, string[] options, bool ptx)
    {
        int driver;
        try { driver = Cu.DriverVersion; } catch (Exception e) when (e is CudaException or DllNotFoundException) { driver = 0; }
        var (nvMajor, nvMinor) = Nvrtc.Version;
        var sb = new StringBuilder();
        sb.Append("kiln-nvrtc-v1\0").Append(ptx ? "ptx" : "cubin").Append('\0').Append(arch).Append('\0')
          .Append(driver).Append('\0').Append(nvMajor).Append('.').Append(nvMinor).Append('\0').Append(name).Append('\0');
        foreach (var o in options) sb.Append(o).Append('\0');
        sb.Append('\0').Append(source);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    private static void TryWrite(string path, byte[] image)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var tmp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
            File.WriteAllBytes(tmp, image);
            File.Move(tmp, path, overwrite: true);
        }
        catch (IOException) { }            // a read-only or full cache only costs a recompile next time
        catch (UnauthorizedAccessException) { }
    }

    private static byte[] CompileUncached(string source, string name, string arch, string[] options, bool ptx)
    {
        CudaLibraries.Load(CudaLibraryKind.Nvrtc);
        var allOptions = new List<string>(options.Length + 1) { $"--gpu-architecture={arch}" };
        allOptions.AddRange(options);

        IntPtr prog;
        var src = Encoding.UTF8.GetBytes(source + "\0");
        var nm = Encoding.UTF8.GetBytes(name + "\0");
        fixed (byte* s = src) fixed (byte* n = nm)
            Nvrtc.Check(NvrtcNative.nvrtcCreateProgram(&prog, s, n, 0, null, null), "nvrtcCreateProgram");
        try
        {
            var optBytes = allOptions.Select(o => Encoding.UTF8.GetBytes(o + "\0")).ToArray();
            var handles = optBytes.Select(b => GCHandle.Alloc(b, GCHandleType.Pinned)).ToArray();
            int st;
            try
            {
                var ptrs = stackalloc byte*[optBytes.Length];
                for (int i = 0; i < optBytes.Length; i++) ptrs[i] = (byte*)handles[i].AddrOfPinnedObject();
                st = NvrtcNative.nvrtcCompileProgram(prog, optBytes.Length, ptrs);
            }
            finally { foreach (var h in handles) h.Free(); }
            if (st != NvrtcNative.NVRTC_SUCCESS)
                throw Nvrtc.Error(st, $"nvrtcCompileProgram({name}, {string.Join(' ', allOptions)})", ProgramLog(prog));

            nuint size;
            byte[] image;
            if (ptx)
            {
                Nvrtc.Check(NvrtcNative.nvrtcGetPTXSize(prog, &size), "nvrtcGetPTXSize");
                image = new byte[(int)size];
                fixed (byte* p = image) Nvrtc.Check(NvrtcNative.nvrtcGetPTX(prog, p), "nvrtcGetPTX");
            }
            else
            {
                Nvrtc.Check(NvrtcNative.nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize");
                if (size == 0)
                    throw new CudaException("nvrtcGetCUBINSize", 0, "NVRTC_SUCCESS",
                        $"no cubin was produced; a real architecture (sm_XY) is needed, got '{arch}'");
                image = new byte[(int)size];
                fixed (byte* p = image) Nvrtc.Check(NvrtcNative.nvrtcGetCUBIN(prog, p), "nvrtcGetCUBIN");
            }
            return image;
        }
        finally
        {
            NvrtcNative.nvrtcDestroyProgram(&prog);
        }
    }

    private static string ProgramLog(IntPtr prog)
    {
        nuint size;
        if (NvrtcNative.nvrtcGetProgramLogSize(prog, &size) != NvrtcNative.NVRTC_SUCCESS || size <= 1) return "(empty log)";
        var log = new byte[(int)size];
        fixed (byte* p = log)
        {
            if (NvrtcNative.nvrtcGetProgramLog(prog, p) != NvrtcNative.NVRTC_SUCCESS) return "(log unavailable)";
        }
        return Encoding.UTF8.GetString(log, 0, Math.Max(0, log.Length - 1));
    }
}
