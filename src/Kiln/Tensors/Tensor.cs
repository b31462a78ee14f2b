// Tensor: a lazy handle on a graph node (shape, dtype, device). Ops build nodes; Eval/ToArray/Item run them.
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln;

public sealed partial class Tensor : IDisposable
{
    private Node? _node;

    internal Tensor(Node node)
    {
        _node = node;
    }

    /// <summary>The graph node behind this handle; throws after Dispose.</summary>
    public Node Node => _node ?? throw new ObjectDisposedException(nameof(Tensor), "this tensor was disposed; it can no longer be used");

    public IReadOnlyList<int> Shape => Node.Shape;
    internal int[] ShapeArray => Node.Shape;
    public int Rank => Node.Shape.Length;
    public long Numel => Shapes.Numel(Node.Shape);
    public DType DType => Node.DType;
    public Device Device => Node.Device;
    public bool IsRealised => Node.IsRealised;
    public bool IsDisposed => _node is null;

    /// <summary>Size of one axis (negative axes count from the end).</summary>
    public int Dim(int axis) => Node.Shape[Shapes.Axis(axis, Rank, "Dim")];

    public void Dispose()
    {
        // The node (and its value) lives on while other graphs use it; the GC reclaims it after that.
        _node = null;
    }

    public override string ToString() => _node is null ? "Tensor(disposed)" : $"Tensor{Shapes.Format(Node.Shape)} {DType.ShortName()} {Device}";

    // ---------- evaluation ----------

    /// <summary>Evaluates this tensor (and what it needs) now; returns it for chaining.</summary>
    public Tensor Eval() { Evaluator.Evaluate([Node]); return this; }

    /// <summary>Evaluates several tensors as one graph, so shared work runs once and independent work in parallel.</summary>
    public static void Eval(params Tensor[] tensors) => Evaluator.Evaluate(tensors.Select(t => t.Node).ToArray());

    /// <summary>The values, row-major, converted to <typeparamref name="T"/>.</summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        var node = Node;
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
        var n = Node;
        Evaluator.Evaluate([n]);
        return new Tensor(new Node(OpTable.Constant, [], new LeafAttrs("detached"), n.Shape, n.DType, n.Device, n.Value));
    }

    // ---------- building ----------

    internal static Tensor Apply(OpDef op, IOpAttrs? attrs, params Tensor[] inputs)
    {
        var nodes = new Node[inputs.Length];
        for (int i = 0; i < inputs.Length; i++)
        {
            nodes[i] = inputs[i]._node ?? throw new ObjectDisposedException(nameof(Tensor), $"{op.Name}: input {i} was disposed");
            if (i > 0 && !nodes[i].Device.Equals(nodes[0].Device))
                throw new ArgumentException($"{op.Name}: inputs are on different devices ({nodes[0].Device} and {nodes[i].Device}, input {i}); move them to one device first");
        }
        var (shape, dtype) = op.Infer(nodes, attrs);
        var device = nodes.Length > 0 ? nodes[0].Device : Device.Cpu;
        return new Tensor(new Node(op, nodes, attrs, shape, dtype, device));
    }

    internal static Tensor FromRealised(Realised value, Device device, string kind = "data") =>
        new(new Node(OpTable.Constant, [], new LeafAttrs(kind), value.Shape, value.DType, device, value));
}

public sealed partial class Tensor
{
    /// <summary>Graphviz text of the graph that computes this tensor.</summary>
    public string ToDot() => Graph.GraphInfo.ToDot(Node);

    /// <summary>Structural hash of the graph that computes this tensor (never depends on data).</summary>
    public long StructuralHash() => Graph.GraphInfo.StructuralHash(Node);
}
