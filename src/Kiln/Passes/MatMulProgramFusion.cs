// Producer-epilogue fusion: a fused elementwise group (or a single elementwise op) that reads a matmul's (or matmul_epilogue's) product, the
// product read by nothing else, becomes one `matmul_program` node: the GEMM writes the product and the group's
// program then runs over that same buffer in place, so the product is never handed over as a separate value
// (one buffer and one kernel fewer; e.g. tanh(x·W + b)·0.5 + r, (x·W)² − y). Runs after elementwise fusion and
// reduction prologues. On the CPU any such group; on CUDA only product · gelu_tanh_grad(p) — a tanh-GELU backward —
// which cuBLASLt computes in the GEMM's own DGELU epilogue (p as its auxiliary input); the CUDA backend fuses other
// GEMM epilogues its own way.
using Kiln.Graph;

namespace Kiln.Passes;

internal static class MatMulProgramFusion
{
    public const string Name = "matmulprogram";

    public static Node[] Apply(Node[] outputs, Func<Node, bool> isInput, out int rewrites) =>
        WholeGraphRewrite.Apply(outputs, isInput, (n, users, map) =>
        {
            if (Program(n) is not { } program) return null;
            bool cpu = n.Device.Kind == DeviceKind.Cpu;
            if (cpu ? n.DType is not (DType.Float32 or DType.Float64)
                : n.Device.Kind != DeviceKind.Cuda || n.DType is not (DType.Float32 or DType.BFloat16 or DType.Float16)) return null;
            // The CPU takes the first product only the group reads; CUDA the one the DGELU form multiplies (the other
            // input, gelu_tanh_grad's, may be a product too: the forward's pre-activation, when nothing else reads it).
            int? found = null;
            foreach (int k in Producers(n, isInput, users))
                if (cpu || (ReferenceEquals(n.InputArray[k].Op, OpTable.MatMul) && DGeluAux(program, k, n.InputArray.Length) is int aux
                    && Shapes.Equal(n.InputArray[aux].Shape, n.Shape) && n.InputArray[aux].DType == n.DType)) { found = k; break; }
            if (found is not int slot) return null;
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

    /// <summary>
    /// The group input other than the product when the program is exactly product · gelu_tanh_grad(that input) (how
    /// autograd writes a tanh-GELU backward: cuBLASLt's DGELU epilogue with that input as its auxiliary matrix); else null.
    /// </summary>
    internal static int? DGeluAux(FusedProgram p, int slot, int inputs)
    {
        if (inputs != 2 || p.Steps.Length != 2) return null;
        int other = 1 - slot;
        var (d, m) = (p.Steps[0], p.Steps[1]);
        if (!ReferenceEquals(d.Op, OpTable.GeluTanhGrad) || d.A != ~other || !ReferenceEquals(m.Op, OpTable.Mul)) return null;
        return (m.A == ~slot && m.B == 0) || (m.A == 0 && m.B == ~slot) ? other : null;
    }

    /// <summary>The group inputs that are products only this group reads (once), of the group's shape and dtype.</summary>
    private static IEnumerable<int> Producers(Node g, Func<Node, bool> isInput, IReadOnlyDictionary<Node, int> users)
    {
        for (int k = 0; k < g.InputArray.Length; k++)
        {
            var m = g.InputArray[k];
            if ((ReferenceEquals(m.Op, OpTable.MatMul) || ReferenceEquals(m.Op, OpTable.MatMulEpilogue)) && !isInput(m)
                && users.GetValueOrDefault(m) == 1 && m.DType == g.DType && Shapes.Equal(m.Shape, g.Shape)
                && m.InputArray.All(i => i.DType == g.DType))
                yield return k;
        }
    }
}
