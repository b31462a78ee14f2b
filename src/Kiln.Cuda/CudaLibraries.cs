// Locates the native CUDA libraries by soname, then by probing the usual install folders, and hands them
// to the [LibraryImport] stubs through one DllImportResolver for this assembly. A library that cannot be
// found gives one CudaLibraryNotFoundException listing every place that was tried.
using System.Reflection;
using System.Runtime.InteropServices;

namespace Kiln.Cuda;

public static class CudaLibraries
{
    // Logical names used in [LibraryImport]; the resolver maps them to the handles loaded here.
    internal const string DriverName = "kiln-cuda-driver";
    internal const string NvrtcName = "kiln-cuda-nvrtc";
    internal const string CublasLtName = "kiln-cuda-cublaslt";

    public static IReadOnlyList<string> DriverSonames { get; } = ["libcuda.so.1", "libcuda.so"];
    public static IReadOnlyList<string> NvrtcSonames { get; } = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];
    public static IReadOnlyList<string> CublasLtSonames { get; } = ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"];

    private static readonly Lock Gate = new();
    private static readonly Dictionary<CudaLibraryKind, Loaded> Handles = new();
    private static readonly Dictionary<CudaLibraryKind, CudaLibraryNotFoundException> Failures = new();
    private static int _resolverSet;

    private sealed record Loaded(IntPtr Handle, string Path);

    /// <summary>Registers the resolver (idempotent). Called from the static constructors of the native classes.</summary>
    internal static void EnsureResolver()
    {
        if (Interlocked.Exchange(ref _resolverSet, 1) == 1) return;
        NativeLibrary.SetDllImportResolver(typeof(CudaLibraries).Assembly, Resolve);
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path) => name switch
    {
        DriverName => Load(CudaLibraryKind.Driver),
        NvrtcName => Load(CudaLibraryKind.Nvrtc),
        CublasLtName => Load(CudaLibraryKind.CublasLt),
        _ => IntPtr.Zero,
    };

    /// <summary>The handle of a CUDA library, loading it on first use; throws CudaLibraryNotFoundException
    /// (cached: the search runs once per process) when it cannot be found.</summary>
    public static IntPtr Load(CudaLibraryKind kind)
    {
        lock (Gate)
        {
            if (Handles.TryGetValue(kind, out var loaded)) return loaded.Handle;
            if (Failures.TryGetValue(kind, out var failure)) throw failure;
            var (display, sonames, hint) = Describe(kind);
            try
            {
                var (handle, where) = LoadFirst(display, sonames, hint, ProbeDirectories());
                Handles[kind] = new Loaded(handle, where);
                return handle;
            }
            catch (CudaLibraryNotFoundException e)
            {
                Failures[kind] = e;
                throw;
            }
        }
    }

    /// <summary>True when the library loads (never throws).</summary>
    public static bool TryLoad(CudaLibraryKind kind, out string? error)
    {
        try { Load(kind); error = null; return true; }
        catch (CudaException e) { error = e.Message; return false; }
    }

    /// <summary>Where a loaded library came from (the soname or full path that loaded), or null.</summary>
    public static string? LoadedFrom(CudaLibraryKind kind)
    {
        lock (Gate) return Handles.TryGetValue(kind, out var l) ? l.Path : null;
    }

    /// <summary>An export of a loaded library, or zero when absent (for symbols that differ between versions).</summary>
    internal static IntPtr TryGetExport(CudaLibraryKind kind, string symbol) =>
        NativeLibrary.TryGetExport(Load(kind), symbol, out var p) ? p : IntPtr.Zero;

    private static (string Display, IReadOnlyList<string> Sonames, string Hint) Describe(CudaLibraryKind kind) => kind switch
    {
        CudaLibraryKind.Driver => ("The CUDA driver library (libcuda)", DriverSonames,
            "Install the NVIDIA driver (it provides libcuda.so.1), or add its folder to LD_LIBRARY_PATH."),
        CudaLibraryKind.Nvrtc => ("NVRTC (libnvrtc, the CUDA runtime compiler)", NvrtcSonames,
            "Install the CUDA toolkit's NVRTC (CUDA 12 or 13), or add the folder holding libnvrtc.so.* to LD_LIBRARY_PATH or set CUDA_PATH."),
        CudaLibraryKind.CublasLt => ("cuBLASLt (libcublasLt)", CublasLtSonames,
            "Install the CUDA toolkit's cuBLAS (CUDA 12 or 13), or add the folder holding libcublasLt.so.* to LD_LIBRARY_PATH or set CUDA_PATH."),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Tries each soname through the system loader, then in each probe folder; the first that
    /// loads wins. Throws CudaLibraryNotFoundException listing every attempt.</summary>
    internal static (IntPtr Handle, string Where) LoadFirst(string display, IReadOnlyList<string> sonames, string hint,
        IReadOnlyList<string> directories)
    {
        var searched = new List<string>();
        foreach (var soname in sonames)
        {
            if (NativeLibrary.TryLoad(soname, out var h)) return (h, soname);
            searched.Add($"{soname} via the system loader (LD_LIBRARY_PATH, ld.so.cache, /lib, /usr/lib): not found");
        }
        foreach (var dir in directories)
        {
            foreach (var soname in sonames)
            {
                var full = Path.Combine(dir, soname);
                if (!File.Exists(full)) { searched.Add($"{full}: no such file"); continue; }
                try { return (NativeLibrary.Load(full), full); }
                catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
                {
                    searched.Add($"{full}: exists but failed to load: {e.Message}");
                }
            }
        }
        throw new CudaLibraryNotFoundException(display, hint, searched);
    }

    /// <summary>Folders probed after the system loader, in order, without duplicates or missing folders
    /// (the missing ones are listed once so the error shows them too).</summary>
    internal static IReadOnlyList<string> ProbeDirectories()
    {
        var dirs = new List<string>();
        void Add(string? d)
        {
            if (string.IsNullOrWhiteSpace(d)) return;
            d = d.TrimEnd('/');
            if (d.Length == 0 || dirs.Contains(d)) return;
            dirs.Add(d);
        }
        foreach (var d in (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "").Split(':')) Add(d);
        foreach (var env in new[] { "CUDA_PATH", "CUDA_HOME" })
        {
            var root = Environment.GetEnvironmentVariable(env);
            if (string.IsNullOrWhiteSpace(root)) continue;
            Add(Path.Combine(root, "targets/x86_64-linux/lib"));
            Add(Path.Combine(root, "lib64"));
            Add(Path.Combine(root, "lib"));
        }
        Add("/usr/local/cuda/targets/x86_64-linux/lib");
        Add("/usr/local/cuda/lib64");
        try
        {
            // Versioned installs, newest first (cuda-13.0 before cuda-12.8).
            var versioned = Directory.Exists("/usr/local")
                ? Directory.GetDirectories("/usr/local", "cuda-*").OrderByDescending(VersionKey).ToList()
                : [];
            foreach (var root in versioned)
            {
                Add(Path.Combine(root, "targets/x86_64-linux/lib"));
                Add(Path.Combine(root, "lib64"));
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        Add("/usr/lib/x86_64-linux-gnu");
        Add("/usr/lib64");
        Add("/usr/lib");
        Add("/usr/lib/wsl/lib");
        Add(AppContext.BaseDirectory);
        return dirs;
    }

    private static Version VersionKey(string dir)
    {
        var name = Path.GetFileName(dir);
        return Version.TryParse(name["cuda-".Length..], out var v) ? v : new Version(0, 0);
    }
}
