// Reverse-mode autodiff as a graph transform: gradients are new lazy nodes built from the op table's
// gradient rules, so forward, backward and an optimizer update can be evaluated as one graph.
using Kiln.Graph;

namespace Kiln;

public static class Autograd
{
    /// <summary>
    /// Calls <paramref name="f"/> on <paramref name="parameters"/> and returns its (scalar) value with the
    /// lazy gradient of that value with respect to each parameter. Nothing is evaluated.
    /// </summary>
    public static (Tensor Value, Tensor[] Grads) ValueAndGrad(Func<Tensor[], Tensor> f, params Tensor[] parameters)
    {
        var value = f(parameters);
        return (value, Grad(value, parameters));
    }

    /// <summary>Lazy d(output)/d(wrt) for a one-element output; zeros for a parameter it does not depend on.</summary>
    public static Tensor[] Grad(Tensor output, params Tensor[] wrt)
    {
        if (output.Numel != 1)
            throw new ArgumentException($"grad: output of shape {Shapes.Format(output.ShapeArray)} is not a scalar; use Vjp(output, seed, wrt) with a seed of that shape");
        return Vjp(output, Tensor.OnesLike(output), wrt);
    }

    /// <summary>Vector-Jacobian product: the gradient flowing back from <paramref name="seed"/> (shaped like output).</summary>
    public static Tensor[] Vjp(Tensor output, Tensor seed, Tensor[] wrt)
    {
        if (!Shapes.Equal(seed.ShapeArray, output.ShapeArray))
            throw new ArgumentException($"grad: seed shape {Shapes.Format(seed.ShapeArray)} must equal output shape {Shapes.Format(output.ShapeArray)}");
        if (!output.DType.IsFloat()) throw new ArgumentException($"grad: output must be floating-point, got {output.DType.ShortName()}");
        var targets = new HashSet<Node>(wrt.Select(t => t.Node), ReferenceEqualityComparer.Instance);
        var (order, reaches) = TopologicalOrder(output.Node, targets);

        var grads = new Dictionary<Node, Tensor>(ReferenceEqualityComparer.Instance) { [output.Node] = seed.Cast(output.DType) };
        var recompute = Recompute.For(order);
        for (int i = order.Count - 1; i >= 0; i--)
        {
            var node = order[i];
            if (!grads.TryGetValue(node, out var g)) continue;
            var inputs = node.InputArray;
            var seen = recompute?.View(node, g) ?? node;   // inside a checkpointed segment: the recomputed copy
            if (node.Op.Grad is null)
            {
                if (inputs.Any(n => n.DType.IsFloat() && reaches.Contains(n)))
                    throw new NotSupportedException($"grad: op {node.Op.Name} has no gradient rule, so gradients cannot flow through {node}");
                continue;
            }
            var ctx = new GradContext(seen, seen.InputArray.Select(n => new Tensor(n)).ToArray(), new Tensor(seen), g);
            var gs = node.Op.Grad(ctx);
            for (int k = 0; k < inputs.Length; k++)
            {
                var gi = gs[k];
                if (gi is null || !inputs[k].DType.IsFloat() || !reaches.Contains(inputs[k])) continue;
                if (!Shapes.Equal(gi.ShapeArray, inputs[k].Shape))
                    throw new InvalidOperationException($"internal: gradient rule of {node.Op.Name} gave shape {Shapes.Format(gi.ShapeArray)} for input {k} of shape {Shapes.Format(inputs[k].Shape)}");
                gi = gi.Cast(inputs[k].DType);
                grads[inputs[k]] = grads.TryGetValue(inputs[k], out var acc) ? acc + gi : gi;
            }
        }
        return wrt.Select(t => grads.TryGetValue(t.Node, out var g) ? g : Tensor.ZerosLike(t)).ToArray();
    }

    /// <summary>
    /// Nodes between the output and the targets, in topological order. Also records which nodes depend on a
    /// target, so gradients are built only where they can be non-zero.
    /// </summary>
    private static (List<Node> Order, HashSet<Node> Reaches) TopologicalOrder(Node output, HashSet<Node> targets)
    {
        var order = GraphWalk.Topological([output], _ => false);
        var reaches = new HashSet<Node>(ReferenceEqualityComparer.Instance);
        foreach (var n in order)   // inputs first, so each node sees its inputs' answer
        {
            bool reached = targets.Contains(n);
            foreach (var i in n.InputArray) if (reached || (reached = reaches.Contains(i))) break;
            if (reached) reaches.Add(n);
        }
        return (order, reaches);
    }

    /// <summary>
    /// Gradient checkpointing (see <see cref="Ops.Checkpoint"/>): each node downstream of a checkpoint mark
    /// belongs to the segment of the latest mark it depends on. Gradient rules of a segment's nodes see a copy
    /// of the segment rebuilt from after(mark, gate), gate being the first gradient that reaches the segment
    /// in the backward walk, so the copy runs only when the backward pass gets there.
    /// </summary>
    private sealed class Recompute
    {
        private readonly Dictionary<Node, int> _segment;
        private readonly Dictionary<int, Node> _gate = [];
        private readonly Dictionary<Node, Node> _copies = new(ReferenceEqualityComparer.Instance);

        private Recompute(Dictionary<Node, int> segment) => _segment = segment;

        public static Recompute? For(List<Node> order)
        {
            if (!order.Any(n => ReferenceEquals(n.Op, OpTable.Checkpoint))) return null;
            var segment = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
            int marks = 0;
            foreach (var n in order)   // inputs first
            {
                int s = 0;
                foreach (var i in n.InputArray) s = Math.Max(s, segment.GetValueOrDefault(i));
                segment[n] = ReferenceEquals(n.Op, OpTable.Checkpoint) ? ++marks : s;
            }
            return new Recompute(segment);
        }

        /// <summary>The node a gradient rule should see: the node itself outside segments, else its copy.</summary>
        public Node View(Node n, Tensor upstream)
        {
            int s = _segment.GetValueOrDefault(n);
            if (s == 0 || n.IsRealised || n.InputArray.Length == 0) return n;
            _gate.TryAdd(s, upstream.Node);   // the backward walk reaches segment s here first
            return Copy(n, s);
        }

        private Node Copy(Node n, int s)
        {
            if (_copies.TryGetValue(n, out var c)) return c;
            if (ReferenceEquals(n.Op, OpTable.Checkpoint))
                c = new Node(OpTable.After, [n, _gate[s]], null, n.Shape, n.DType, n.Device);
            else
            {
                var inputs = n.InputArray.Select(i => _segment.GetValueOrDefault(i) == s && !i.IsRealised && i.InputArray.Length > 0 ? Copy(i, s) : i).ToArray();
                c = new Node(n.Op, inputs, n.Attrs, n.Shape, n.DType, n.Device);
            }
            _copies[n] = c;
            return c;
        }
    }
}
