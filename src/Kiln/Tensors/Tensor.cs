// Tensor: a lazy handle on a graph node (shape, dtype, device). Ops build nodes; Eval/ToArray/Item run them.
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln;

public sealed partial class Tensor : IDisposable
{
    private readonly Node _node;
    private bool _disposed;

    internal Tensor(Node node) => _node = node;

    /// <summary>The graph node behind this handle; throws after Dispose.</summary>
    public Node Node => _disposed ? throw Disposed("Node") : _node;

    /// <summary>The node for building an op named <paramref name="op"/>; after Dispose the error names that op.</summary>
    internal Node NodeFor(string op) => _disposed ? throw Disposed(op) : _node;

    private ObjectDisposedException Disposed(string op) =>
        new(nameof(Tensor), $"{op}: the tensor {Shapes.Format(_node.Shape)} {_node.DType.ShortName()} was disposed and can no longer be used");

    // Metadata stays readable after Dispose, so that the first op touching a disposed tensor can name itself.
    public IReadOnlyList<int> Shape => _node.Shape;
    internal int[] ShapeArray => _node.Shape;
    public int Rank => _node.Shape.Length;
    public long Numel => Shapes.Numel(_node.Shape);
    public DType DType => _node.DType;
    public Device Device => _node.Device;
    public bool IsRealised => _node.IsRealised;
    public bool IsDisposed => _disposed;

    /// <summary>Size of one axis (negative axes count from the end).</summary>
    public int Dim(int axis) => Node.Shape[Shapes.Axis(axis, Rank, "Dim")];

    /// <summary>
    /// Marks the handle unusable and hands a computed value's buffer back to the pool at once when no view
    /// of it exists (otherwise the GC reclaims it). Graphs built on this tensor stay valid: they recompute
    /// it if needed. Do not dispose a tensor that another thread is evaluating.
    /// </summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _node.ReleaseValue();
    }

    public override string ToString() => $"Tensor{Shapes.Format(_node.Shape)} {DType.ShortName()} {Device}{(_disposed ? " (disposed)" : "")}";

    // ---------- evaluation ----------

    /// <summary>Evaluates this tensor (and what it needs) now; returns it for chaining.</summary>
    public Tensor Eval() { Evaluator.Evaluate([NodeFor("Eval")]); return this; }

    /// <summary>Evaluates several tensors as one graph, so shared work runs once and independent work in parallel.</summary>
    public static void Eval(params Tensor[] tensors) => Evaluator.Evaluate(tensors.Select(t => t.NodeFor("Eval")).ToArray());

    /// <summary>The values, row-major, converted to <typeparamref name="T"/>.</summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        var node = NodeFor("ToArray");
        Evaluator.Evaluate([node]);
        return DataReader.Read<T>(node.Value!);
    }

    /// <summary>The single value of a one-element tensor.</summary>
    public T Item<T>() where T : unmanaged
    {
        if (Numel != 1) throw new InvalidOperationException($"Item: tensor of shape {Shapes.Format(Node.Shape)} has {Numel} elements, not 1");
        return ToArray<T>()[0];
    }

    /// <summary>A leaf tensor with this tensor's value and no history (gradients stop here).</summary>
    public Tensor Detach()
    {
        var n = NodeFor("Detach");
        Evaluator.Evaluate([n]);
        var v = n.Value!;
        // A view of its own, so the buffer counts this leaf as a user (disposing the source cannot free it).
        var view = new Realised(v.Buffer, v.Offset, v.Shape, v.Strides);
        return new Tensor(new Node(OpTable.Constant, [], new LeafAttrs("detached"), n.Shape, n.DType, n.Device, view));
    }

    // ---------- building ----------

    internal static Tensor Apply(OpDef op, IOpAttrs? attrs, params Tensor[] inputs)
    {
        var nodes = new Node[inputs.Length];
        for (int i = 0; i < inputs.Length; i++)
        {
            if (inputs[i]._disposed)
                throw new ObjectDisposedException(nameof(Tensor), $"{op.Name}: input {i} ({Shapes.Format(inputs[i]._node.Shape)} {inputs[i]._node.DType.ShortName()}) was disposed and can no longer be used");
            nodes[i] = inputs[i]._node;
            if (i > 0 && !nodes[i].Device.Equals(nodes[0].Device))
                throw new ArgumentException($"{op.Name}: inputs are on different devices ({nodes[0].Device} and {nodes[i].Device}, input {i}); move them to one device first");
        }
        var (shape, dtype) = op.Infer(nodes, attrs);
        if (Shapes.Numel(shape) > Array.MaxLength)
            throw new ArgumentException($"{op.Name}: the result would have shape {Shapes.Format(shape)} ({Shapes.Numel(shape)} elements); a CPU tensor holds at most {Array.MaxLength}");
        var device = nodes.Length > 0 ? nodes[0].Device : Device.Cpu;
        return new Tensor(new Node(op, nodes, attrs, shape, dtype, device));
    }

    internal static Tensor FromRealised(Realised value, Device device, string kind = "data") =>
        new(new Node(OpTable.Constant, [], new LeafAttrs(kind), value.Shape, value.DType, device, OnDevice(value, device)));

    /// <summary>A leaf's value on its device: host data for an accelerator is copied there once, at creation.</summary>
    internal static Realised OnDevice(Realised value, Device device) =>
        device.Kind == DeviceKind.Cpu || value.Buffer.OnDevice ? value : Backends.For(device).Upload(value);

    /// <summary>This tensor on <paramref name="device"/> (a copy; lazy like every op). Same device: itself.</summary>
    public Tensor To(Device device)
    {
        var n = NodeFor("To");
        if (n.Device.Equals(device)) return this;
        if (device.Kind != DeviceKind.Cpu) Backends.For(device);   // fail here, at the user's line, if the device cannot run
        return new Tensor(new Node(OpTable.ToDevice, [n], new DeviceAttrs(device), n.Shape, n.DType, device));
    }
}

public sealed partial class Tensor
{
    /// <summary>Graphviz text of the graph that computes this tensor.</summary>
    public string ToDot() => Graph.GraphInfo.ToDot(Node);

    /// <summary>Structural hash of the graph that computes this tensor (never depends on data).</summary>
    public long StructuralHash() => Graph.GraphInfo.StructuralHash(Node);
}
