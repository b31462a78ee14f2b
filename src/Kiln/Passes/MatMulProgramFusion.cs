// Producer-epilogue fusion: a fused elementwise group (or a single elementwise op) that reads a matmul's (or matmul_epilogue's) product, the
// product read by nothing else, becomes one `matmul_program` node: the GEMM writes the product and the group's
// program then runs over that same buffer in place, so the product is never handed over as a separate value
// (one buffer and one kernel fewer; e.g. tanh(x·W + b)·0.5 + r, (x·W)² − y). Runs after elementwise fusion and
// reduction prologues, on the CPU (the CUDA backend fuses GEMM epilogues its own way).
using Kiln.Graph;

namespace Kiln.Passes;

internal static class MatMulProgramFusion
{
    public const string Name = "matmulprogram";

    public static Node[] Apply(Node[] outputs, Func<Node, bool> isInput, out int rewrites) =>
        WholeGraphRewrite.Apply(outputs, isInput, (n, users, map) =>
        {
            if (Program(n) is not { } program || n.Device.Kind != DeviceKind.Cpu || n.DType is not (DType.Float32 or DType.Float64)
                || Producer(n, isInput, users) is not int slot) return null;
            var m = n.InputArray[slot];
            var attrs = new MatMulProgramAttrs(program, slot, m.InputArray.Length,
                ReferenceEquals(m.Op, OpTable.MatMulEpilogue) ? (EpilogueAttrs)m.Attrs! : null);
            var ins = m.InputArray.Select(map).Concat(n.InputArray.Where((_, k) => k != slot).Select(map)).ToArray();
            return new Node(OpTable.MatMulProgram, ins, attrs, n.Shape, n.DType, n.Device);
        }, out rewrites);

    /// <summary>A fused group's program, or a single elementwise op as a one-step program (a lone `· r` or `+ b`
    /// after a matmul_epilogue is no group, but is the same epilogue); else null.</summary>
    private static FusedProgram? Program(Node n)
    {
        if (ReferenceEquals(n.Op, OpTable.FusedElementwise)) return (FusedProgram)n.Attrs!;
        if (n.Op.Fusion != FusionClass.Elementwise || !Cpu.FusedKernel.Supports(n.Op) || n.InputArray.Any(i => i.DType != n.DType)) return null;
        return new FusedProgram([new FusedInstruction(n.Op, ~0, n.InputArray.Length > 1 ? ~1 : 0)]);
    }

    /// <summary>The group input that is a product only this group reads (once), of the group's shape and dtype; else null.</summary>
    private static int? Producer(Node g, Func<Node, bool> isInput, IReadOnlyDictionary<Node, int> users)
    {
        for (int k = 0; k < g.InputArray.Length; k++)
        {
            var m = g.InputArray[k];
            if ((ReferenceEquals(m.Op, OpTable.MatMul) || ReferenceEquals(m.Op, OpTable.MatMulEpilogue)) && !isInput(m)
                && users.GetValueOrDefault(m) == 1 && m.DType == g.DType && Shapes.Equal(m.Shape, g.Shape)
                && m.InputArray.All(i => i.DType == g.DType))
                return k;
        }
        return null;
    }
}
