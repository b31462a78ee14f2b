// A node of the lazy graph: an op row, its inputs, attributes, shape and dtype. Built once, never edited;
// the one exception is realisation, which publishes the value once and then drops the inputs (the node
// becomes a leaf holding data, as in MLX), so evaluated history does not pile up across training steps.
namespace Kiln.Graph;

public sealed class Node
{
    private static long _nextId;

    public long Id { get; }
    public OpDef Op { get; }
    public IOpAttrs? Attrs { get; }
    public int[] Shape { get; }
    public DType DType { get; }
    public Device Device { get; }

    private Node[] _inputs;
    private Runtime.Realised? _value;

    internal Node(OpDef op, Node[] inputs, IOpAttrs? attrs, int[] shape, DType dtype, Device device, Runtime.Realised? value = null)
    {
        Id = Interlocked.Increment(ref _nextId);
        Op = op; _inputs = inputs; Attrs = attrs; Shape = shape; DType = dtype; Device = device; _value = value;
    }

    /// <summary>Inputs; empty for leaves and for nodes whose value has been realised.</summary>
    public IReadOnlyList<Node> Inputs => Volatile.Read(ref _inputs);
    internal Node[] InputArray => Volatile.Read(ref _inputs);

    public bool IsRealised => Volatile.Read(ref _value) != null;
    internal Runtime.Realised? Value => Volatile.Read(ref _value);

    /// <summary>True for a node that was computed (not created from data) and has since been realised.</summary>
    public bool WasComputed => Op.Arity != 0;

    /// <summary>Publishes the value once; returns the value that won (a concurrent Eval may have been first).</summary>
    internal Runtime.Realised Publish(Runtime.Realised value)
    {
        var won = Interlocked.CompareExchange(ref _value, value, null) ?? value;
        Volatile.Write(ref _inputs, []);
        return won;
    }

    public override string ToString() => $"%{Id} = {Op.Name}{(Attrs is null ? "" : "[" + Attrs + "]")} {Shapes.Format(Shape)} {DType.ShortName()}";
}
