// Devices other than the CPU are provided by backends that register themselves (Kiln.Cuda registers "cuda").
// The engine stays CPU-only code: a node whose device is an accelerator is handed to that device's backend,
// and moving data between devices is the backend's job.
using Kiln.Graph;

namespace Kiln.Runtime;

internal interface IDeviceBackend
{
    /// <summary>Runs <paramref name="node"/> (on this backend's device) over inputs already on that device.</summary>
    Realised Execute(Node node, Realised[] inputs);

    /// <summary>A device copy of a host value.</summary>
    Realised Upload(Realised host);

    /// <summary>A dense host copy of a device value.</summary>
    Realised Download(Realised device);
}

/// <summary>A backend that can run a whole plan itself (CUDA: captured once into a CUDA Graph, then replayed).</summary>
internal interface IPlanRunner
{
    /// <summary>
    /// Runs <paramref name="plan"/> over <paramref name="inputs"/> (slots then constants) and returns a fresh
    /// value per plan node that is an output, or null to let the evaluator run the plan node by node this time.
    /// </summary>
    Dictionary<int, Realised>? TryRun(Plan plan, Realised[] inputs);
}

internal static class Backends
{
    private static readonly Dictionary<DeviceKind, Func<int, IDeviceBackend>> Factories = [];
    private static readonly Dictionary<Device, IDeviceBackend> Live = [];
    private static readonly Lock Gate = new();

    /// <summary>Why each registered kind is unavailable (null when usable); set by the backend at registration.</summary>
    private static readonly Dictionary<DeviceKind, Func<string?>> Unavailable = [];

    public static void Register(DeviceKind kind, Func<int, IDeviceBackend> factory, Func<string?> unavailableReason)
    {
        lock (Gate) { Factories[kind] = factory; Unavailable[kind] = unavailableReason; }
    }

    public static bool IsRegistered(DeviceKind kind) { lock (Gate) return Factories.ContainsKey(kind); }

    public static string? WhyUnavailable(DeviceKind kind)
    {
        Func<string?>? why;
        lock (Gate) if (!Unavailable.TryGetValue(kind, out why)) return $"no {kind} backend is loaded (reference Kiln.Cuda and call KilnCuda.Register())";
        return why();
    }

    public static IDeviceBackend For(Device device)
    {
        lock (Gate)
        {
            if (Live.TryGetValue(device, out var b)) return b;
            if (!Factories.TryGetValue(device.Kind, out var f))
                throw new NotSupportedException($"{device}: no backend for {device.Kind} is loaded (reference Kiln.Cuda and call KilnCuda.Register())");
            return Live[device] = f(device.Index);
        }
    }
}
