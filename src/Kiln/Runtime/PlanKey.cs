// The structural key of an Eval: ops, attributes, shapes, dtypes and topology of the unrealised graph, with
// realised nodes as numbered input slots (shape and dtype only; fill constants also by value). Never data.
// Walking the graph for the key also collects the slot values the plan will be run with.
using System.Runtime.CompilerServices;
using Kiln.Graph;

namespace Kiln.Runtime;

internal sealed class PlanKey : IEquatable<PlanKey>
{
    private readonly int[] _codes;
    private readonly object?[] _refs;   // OpDef (by reference) and attributes (by value), in walk order
    private readonly int _hash;

    private PlanKey(int[] codes, object?[] refs)
    {
        _codes = codes; _refs = refs;
        var h = new HashCode();
        foreach (int c in codes) h.Add(c);
        foreach (var r in refs) h.Add(r is OpDef op ? RuntimeHelpers.GetHashCode(op) : r?.GetHashCode() ?? 0);
        _hash = h.ToHashCode();
    }

    /// <summary>The walk's result: the key, the slot nodes and values in slot order, and the requested nodes.</summary>
    internal sealed record Walk(PlanKey Key, Node[] SlotNodes, Realised[] SlotValues, Node[] Requested);

    public static Walk Build(Node[] outputs, bool optimize)
    {
        var scratch = _scratch ??= new Scratch();
        scratch.Clear();
        var (codes, refs, slotNodes, slotValues, requested, stack) = (scratch.Codes, scratch.Refs, scratch.SlotNodes, scratch.SlotValues, scratch.Requested, scratch.Stack);
        codes.Add(optimize ? 1 : 0);
        var id = NodeIds.Rent();
        int finished = 0;
        foreach (var root in outputs)
        {
            if (root.IsRealised) continue;
            if (!id.Contains(root)) Visit(root);
            requested.Add(root);
        }
        codes.Add(-2);
        foreach (var r in requested) codes.Add(id[r]);
        var walk = new Walk(new PlanKey([.. codes], [.. refs]), [.. slotNodes], [.. slotValues], [.. requested]);
        scratch.Clear(); id.Clear();   // the per-thread scratch must not keep this graph (or its data) alive
        return walk;

        void Visit(Node root)
        {
            stack.Push((root, 0));
            id[root] = -1;
            while (stack.Count > 0)
            {
                var (n, next) = stack.Pop();
                // A node realised now is a slot, whatever it was when first seen (another thread may publish it).
                var value = n.Value;
                var ins = value is null ? n.InputArray : [];
                if (next < ins.Length)
                {
                    stack.Push((n, next + 1));
                    var c = ins[next];
                    if (!id.Contains(c)) { id[c] = -1; stack.Push((c, 0)); }
                    continue;
                }
                if (value is not null)
                {
                    codes.Add(-1);
                    refs.Add(n.Attrs as FillAttrs);
                    slotNodes.Add(n);
                    slotValues.Add(value);
                }
                else
                {
                    codes.Add(ins.Length);
                    foreach (var i in ins) codes.Add(id[i]);
                    refs.Add(n.Op);
                    refs.Add(n.Attrs);
                }
                codes.Add((int)n.DType | ((int)n.Device.Kind << 8) | (n.Device.Index << 12));   // plans are per device
                codes.Add(n.Shape.Length);
                foreach (int d in n.Shape) codes.Add(d);
                id[n] = finished++;   // ids in completion order: inputs before users
            }
        }
    }

    /// <summary>Per-thread lists a walk fills and copies out (a plan-cache hit then allocates only its results).</summary>
    private sealed class Scratch
    {
        public readonly List<int> Codes = new(256);
        public readonly List<object?> Refs = new(128);
        public readonly List<Node> SlotNodes = [], Requested = [];
        public readonly List<Realised> SlotValues = [];
        public readonly Stack<(Node Node, int Next)> Stack = new();

        public void Clear()
        {
            Codes.Clear(); Refs.Clear(); SlotNodes.Clear(); SlotValues.Clear(); Requested.Clear(); Stack.Clear();
        }
    }

    [ThreadStatic] private static Scratch? _scratch;

    public bool Equals(PlanKey? other)
    {
        if (other is null || other._hash != _hash || !_codes.AsSpan().SequenceEqual(other._codes) || _refs.Length != other._refs.Length) return false;
        for (int i = 0; i < _refs.Length; i++)
        {
            object? a = _refs[i], b = other._refs[i];
            if (a is OpDef ? !ReferenceEquals(a, b) : !Equals(a, b)) return false;
        }
        return true;
    }

    public override bool Equals(object? obj) => Equals(obj as PlanKey);
    public override int GetHashCode() => _hash;

    /// <summary>A 64-bit form for display and comparison (GraphInfo.StructuralHash).</summary>
    public long Hash64 => (long)_hash << 32 ^ (uint)_codes.Length;
}
