// Devices a tensor can live on. The CPU is built in and is the default; other backends register later.
namespace Kiln;

public enum DeviceKind { Cpu, Cuda }

public sealed class Device : IEquatable<Device>
{
    public DeviceKind Kind { get; }
    public int Index { get; }
    private Device(DeviceKind kind, int index) { Kind = kind; Index = index; }

    public static Device Cpu { get; } = new(DeviceKind.Cpu, 0);

    /// <summary>The device new tensors go to when none is named: <c>KILN_DEVICE</c>, else the CPU.</summary>
    public static Device Default => Settings.Device switch
    {
        null or "cpu" => Cpu,
        var other => throw new NotSupportedException(
            $"KILN_DEVICE={other}: this build of Kiln has only the CPU backend (valid values: cpu)"),
    };

    public bool Equals(Device? other) => other is not null && Kind == other.Kind && Index == other.Index;
    public override bool Equals(object? obj) => Equals(obj as Device);
    public override int GetHashCode() => HashCode.Combine(Kind, Index);
    public override string ToString() => Kind == DeviceKind.Cpu ? "cpu" : $"cuda:{Index}";
}
