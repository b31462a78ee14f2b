// Errors from the CUDA driver, NVRTC and cuBLASLt: every native call goes through one check (Cu.Check,
// Nvrtc.Check, CublasLt.Check) that throws this with the call, the status name and its description.
namespace Kiln.Cuda;

public enum CudaLibraryKind { Driver, Nvrtc, CublasLt }

public class CudaException : Exception
{
    /// <summary>The native function that failed, e.g. <c>cuMemAlloc_v2</c>.</summary>
    public string Call { get; }
    /// <summary>The raw status code (CUresult, nvrtcResult or cublasStatus_t).</summary>
    public int Status { get; }
    /// <summary>The status name, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    public string StatusName { get; }
    /// <summary>The NVRTC compile log, for compile errors; else null.</summary>
    public string? Log { get; }

    public CudaException(string call, int status, string statusName, string description, string? detail = null, string? log = null)
        : base(Format(call, status, statusName, description, detail, log))
    {
        Call = call; Status = status; StatusName = statusName; Log = log;
    }

    protected CudaException(string message) : base(message) { Call = ""; StatusName = ""; }

    internal static string Format(string call, int status, string statusName, string description, string? detail, string? log)
    {
        var msg = $"{call} failed: {statusName} ({status}): {description}";
        if (!string.IsNullOrEmpty(detail)) msg += $". {detail}";
        if (!string.IsNullOrEmpty(log)) msg += $"\nNVRTC log:\n{log.TrimEnd()}";
        return msg;
    }
}

/// <summary>A native CUDA library (driver, NVRTC, cuBLASLt) could not be loaded; the message lists every
/// place that was tried.</summary>
public sealed class CudaLibraryNotFoundException : CudaException
{
    public string Library { get; }
    public IReadOnlyList<string> Searched { get; }

    public CudaLibraryNotFoundException(string library, string hint, IReadOnlyList<string> searched)
        : base(BuildMessage(library, hint, searched))
    {
        Library = library; Searched = searched;
    }

    private static string BuildMessage(string library, string hint, IReadOnlyList<string> searched) =>
        $"{library} could not be loaded. {hint}\nSearched:\n  " + string.Join("\n  ", searched);
}
