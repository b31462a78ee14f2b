// Multi-tensor optimizer ops: one kernel for all parameters instead of a few elementwise kernels per
// parameter (a LoRA model has dozens of small trainable tensors, so per-tensor kernels dominated the update).
using Kiln.Cpu;

namespace Kiln.Graph;

public static partial class OpTable
{
    /// <summary>Σ over all inputs of Σ x² (a scalar): the squared global gradient norm in one pass.</summary>
    public static readonly OpDef SumOfSquares = new("sum_of_squares", -1, FusionClass.Opaque,
        (i, _) =>
        {
            if (i.Length == 0) throw ShapeRules.Error("sum_of_squares", "needs at least one input", i);
            foreach (var n in i) { ShapeRules.RequireFloat("sum_of_squares", n); ShapeRules.RequireSameDType("sum_of_squares", i[0], n); }
            return ([], i[0].DType);
        },
        (x, _) => OptimizerKernels.SumOfSquares(x),
        c => c.Inputs.Select(t => (Tensor?)(t * 2 * c.Upstream)).ToArray());

    /// <summary>
    /// AdamW for n parameters at once. Inputs: stepSize (lr/(1−β1ᵗ)), denomScale (1/√(1−β2ᵗ)), decay (1 − lr·wd),
    /// gradScale (clipping coefficient), all scalars; then p, g, m, v for each parameter. Output: every parameter's
    /// new p, m, v packed flat in that order (views slice them out). Not differentiable.
    /// </summary>
    public static readonly OpDef AdamWUpdate = new("adamw_update", -1, FusionClass.Opaque,
        (i, a) =>
        {
            if (i.Length < 8 || (i.Length - 4) % 4 != 0) throw ShapeRules.Error("adamw_update", "takes 4 scalars then (p, g, m, v) per parameter", i);
            long total = 0;
            for (int k = 4; k < i.Length; k += 4)
            {
                for (int j = 1; j < 4; j++)
                    if (!Shapes.Equal(i[k + j].Shape, i[k].Shape) || i[k + j].DType != DType.Float32)
                        throw ShapeRules.Error("adamw_update", $"parameter {(k - 4) / 4}: p, g, m, v must be float32 of one shape", i);
                total += 3 * Shapes.Numel(i[k].Shape);
            }
            for (int k = 0; k < 4; k++)
                if (i[k].Shape.Length != 0) throw ShapeRules.Error("adamw_update", "the first four inputs must be scalars", i);
            return ([checked((int)total)], DType.Float32);
        },
        (x, n) => OptimizerKernels.AdamW(x, (AdamWAttrs)n.Attrs!),
        null);
}

internal sealed record AdamWAttrs(double Beta1, double Beta2, double Eps) : IOpAttrs
{
    public void AddTo(ref HashCode h) { h.Add(Beta1); h.Add(Beta2); h.Add(Eps); }
    public override string ToString() => $"beta1={Beta1} beta2={Beta2} eps={Eps}";
}
