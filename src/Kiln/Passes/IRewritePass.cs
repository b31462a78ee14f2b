// The contract of an optimizer pass: a pattern over one node (whose inputs are already optimized) and the
// replacement it rewrites to. Passes never edit nodes; they return new ones (or an existing input).
using Kiln.Graph;

namespace Kiln.Passes;

internal interface IRewritePass
{
    /// <summary>Name used by KILN_DISABLE and KILN_LOG=plan.</summary>
    string Name { get; }

    /// <summary>A replacement for <paramref name="node"/> with the same shape and dtype, or null.</summary>
    Node? Rewrite(Node node);
}
