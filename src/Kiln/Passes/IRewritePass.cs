// The contract of an optimizer pass: a pattern over one node (whose inputs are already optimized) and the
// replacement it rewrites to. Passes never edit nodes; they return new ones (or an existing input).
using Kiln.Graph;

namespace Kiln.Passes;

internal interface IRewritePass
{
    /// <summary>Name used by KILN_DISABLE and KILN_LOG=plan.</summary>
    string Name { get; }

    /// <summary>
    /// A replacement for <paramref name="node"/> with the same shape and dtype, or null. A pass may look
    /// through an input to that input's inputs only when <paramref name="isInput"/> says it is not an input
    /// of the graph being optimized (its value is not fixed).
    /// </summary>
    Node? Rewrite(Node node, Func<Node, bool> isInput);
}
