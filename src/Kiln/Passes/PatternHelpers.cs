// Small helpers the pattern passes share: op tests, both operand orders of a commutative op.
using Kiln.Graph;

namespace Kiln.Passes;

internal static class PatternHelpers
{
    public static bool Is(Node n, OpDef op) => ReferenceEquals(n.Op, op);

    /// <summary>(a, b) and (b, a) for a binary node, to match commutative ops in either order.</summary>
    public static (Node, Node)[] Orders(Node n) => [(n.InputArray[0], n.InputArray[1]), (n.InputArray[1], n.InputArray[0])];

    /// <summary>Consumers of each node of the graph being swept (set by the optimizer for the sweep's duration).</summary>
    [ThreadStatic] internal static Dictionary<Node, int>? Consumers;

    /// <summary>
    /// True unless the node feeds more than one consumer. A pass that folds a node into a bigger op must not
    /// fold one that others also read (e.g. a matmul whose output the backward pass needs): the others would
    /// recompute it, and the GEMM would run twice.
    /// </summary>
    public static bool SingleUse(Node n) => Consumers is null || !Consumers.TryGetValue(n, out int c) || c <= 1;

    /// <summary>
    /// A float dtype the fused ops take on the node's device: fp32 and fp64 everywhere; bf16 and fp16 also on CUDA,
    /// whose fused kernels load half-precision operands into fp32 registers (the CPU's fused kernels are fp32/fp64).
    /// </summary>
    public static bool FusableFloat(Node n) =>
        n.DType is DType.Float32 or DType.Float64 || (n.Device.Kind == DeviceKind.Cuda && n.DType is DType.BFloat16 or DType.Float16);

    /// <summary>A node computed inside the graph being optimized (not one of its fixed inputs).</summary>
    public static bool Computed(Node n, Func<Node, bool> isInput) => n.InputArray.Length > 0 && !isInput(n);
}
