// Devices a tensor can live on. The CPU is built in and is the default; other backends register later.
namespace Kiln;

public enum DeviceKind { Cpu, Cuda }

public sealed class Device : IEquatable<Device>
{
    public DeviceKind Kind { get; }
    public int Index { get; }
    private Device(DeviceKind kind, int index) { Kind = kind; Index = index; }

    public static Device Cpu { get; } = new(DeviceKind.Cpu, 0);

    private static readonly Device[] CudaDevices = Enumerable.Range(0, 16).Select(i => new Device(DeviceKind.Cuda, i)).ToArray();

    /// <summary>GPU <paramref name="index"/> through the CUDA backend (Kiln.Cuda must be registered to use it).</summary>
    public static Device Cuda(int index = 0) => (uint)index < CudaDevices.Length ? CudaDevices[index]
        : throw new ArgumentOutOfRangeException(nameof(index), $"CUDA device index {index} is out of range");

    /// <summary>
    /// The device new tensors go to when none is named: <c>KILN_DEVICE</c> (cpu, cuda, cuda:N, auto), else the CPU.
    /// Asking for CUDA where it cannot run is an error naming why, never a silent CPU run.
    /// </summary>
    public static Device Default => Parse(Settings.Device);

    public static Device Parse(string? name)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case null or "" or "cpu": return Cpu;
            case "auto":   // the GPU when a CUDA backend is registered and a GPU and driver are found, else the CPU
                return Runtime.Backends.IsRegistered(DeviceKind.Cuda) && Runtime.Backends.WhyUnavailable(DeviceKind.Cuda) is null ? Cuda(0) : Cpu;
            case var n when n == "cuda" || n.StartsWith("cuda:", StringComparison.Ordinal):
                int index = n == "cuda" ? 0 : int.TryParse(n[5..], out int i) ? i : throw new NotSupportedException($"device '{name}': expected cuda:N");
                if (Runtime.Backends.WhyUnavailable(DeviceKind.Cuda) is { } why) throw new NotSupportedException($"device '{name}': CUDA is unavailable: {why}");
                return Cuda(index);
            default: throw new NotSupportedException($"device '{name}' is not known (valid: cpu, cuda, cuda:N, auto)");
        }
    }

    public bool Equals(Device? other) => other is not null && Kind == other.Kind && Index == other.Index;
    public override bool Equals(object? obj) => Equals(obj as Device);
    public override int GetHashCode() => HashCode.Combine(Kind, Index);
    public override string ToString() => Kind == DeviceKind.Cpu ? "cpu" : $"cuda:{Index}";
}
