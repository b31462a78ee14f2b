// A node of the lazy graph: an op row, its inputs, attributes, shape and dtype. Built once, never edited;
// the one write is realisation, which publishes the value once (the tensor cache). A realised node keeps
// its inputs, so gradients can still be built through it (as in PyTorch); loops that update parameters
// cut the history with Detach(), or every step's graph stays reachable from the next.
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

    private readonly Node[] _inputs;
    private Runtime.Realised? _value;

    internal Node(OpDef op, Node[] inputs, IOpAttrs? attrs, int[] shape, DType dtype, Device device, Runtime.Realised? value = null)
    {
        Id = Interlocked.Increment(ref _nextId);
        Op = op; _inputs = inputs; Attrs = attrs; Shape = shape; DType = dtype; Device = device; _value = value;
    }

    /// <summary>Inputs; empty for leaves.</summary>
    public IReadOnlyList<Node> Inputs => _inputs;
    internal Node[] InputArray => _inputs;

    public bool IsRealised => Volatile.Read(ref _value) != null;
    internal Runtime.Realised? Value => Volatile.Read(ref _value);

    /// <summary>Publishes the value once; returns the value that won (a concurrent Eval may have been first).</summary>
    internal Runtime.Realised Publish(Runtime.Realised value) => Interlocked.CompareExchange(ref _value, value, null) ?? value;

    /// <summary>
    /// Gives a computed node's value back to the buffer pool when nothing else can see it (no view of its
    /// buffer exists); the node can still be recomputed from its inputs. Leaves keep their data.
    /// </summary>
    internal void ReleaseValue()
    {
        if (_inputs.Length == 0 || Volatile.Read(ref _value) is not { } v) return;
        if (Volatile.Read(ref v.Buffer.Users) != 1) return;
        if (Interlocked.CompareExchange(ref _value, null, v) == v) Runtime.Evaluator.Release(v);
    }

    public override string ToString() => $"%{Id} = {Op.Name}{(Attrs is null ? "" : "[" + Attrs + "]")} {Shapes.Format(Shape)} {DType.ShortName()}";
}
