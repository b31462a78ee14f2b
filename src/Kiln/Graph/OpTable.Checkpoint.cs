// Gradient checkpointing as graph structure. `checkpoint` marks the input of a segment (an identity view);
// autograd then builds the segment's backward from a recomputed copy of the segment whose input is
// `after(mark, gate)`: the mark's value, but only once the gate (the gradient arriving at the segment) exists.
// So the recompute is scheduled during the backward pass and the forward's activations can be freed.
namespace Kiln.Graph;

public static partial class OpTable
{
    public static readonly OpDef Checkpoint = new("checkpoint", 1, FusionClass.View,
        (i, _) => (i[0].Shape, i[0].DType),
        (x, _) => new Runtime.Realised(x[0].Buffer, x[0].Offset, x[0].Shape, x[0].Strides),
        c => [c.Upstream], widensHalf: false);

    /// <summary>x, ordered after <c>gate</c> (whose value is not read): a scheduling edge, no data flow.</summary>
    public static readonly OpDef After = new("after", 2, FusionClass.View,
        (i, _) => (i[0].Shape, i[0].DType),
        (x, _) => new Runtime.Realised(x[0].Buffer, x[0].Offset, x[0].Shape, x[0].Strides),
        c => [c.Upstream, null], widensHalf: false);
}

public static partial class OpTable
{
    /// <summary>A copy of x on another device (Tensor.To); the evaluator moves the data through the backends.</summary>
    public static readonly OpDef ToDevice = new("to_device", 1, FusionClass.Opaque,
        (i, _) => (i[0].Shape, i[0].DType),
        (x, n) => Runtime.Evaluator.Transfer(x[0], n.Device),
        c => [c.Upstream.To(c.Inputs[0].Device)], widensHalf: false);
}

/// <summary>The device a to_device node copies to.</summary>
internal sealed record DeviceAttrs(Device Target) : IOpAttrs
{
    public void AddTo(ref HashCode h) => h.Add(Target);
    public override string ToString() => Target.ToString();
}

public static partial class OpTable
{
    /// <summary>sum/mean over some axes of a fused elementwise program (Passes/ReductionPrologueFusion); optimizer-made.</summary>
    public static readonly OpDef FusedReduce = new("fused_reduce", -1, FusionClass.Reduction,
        (i, _) => throw new InvalidOperationException("fused_reduce nodes are made by the optimizer"),
        (x, n) => Cpu.FusedKernel.Reduce(x, n), null);
}

/// <summary>The program, whether the result is the mean (else the sum), the program's output shape, and the
/// reduced axes of that shape (sorted).</summary>
internal sealed record FusedReduceAttrs(FusedProgram Program, bool Mean, int[] Shape, int[] Axes) : IOpAttrs
{
    public void AddTo(ref HashCode h) { Program.AddTo(ref h); h.Add(Mean); foreach (int d in Shape) h.Add(d); h.Add(-1); foreach (int a in Axes) h.Add(a); }
    public bool Equals(FusedReduceAttrs? o) => o is not null && Program.Equals(o.Program) && Mean == o.Mean && Shape.AsSpan().SequenceEqual(o.Shape) && Axes.AsSpan().SequenceEqual(o.Axes);
    public override int GetHashCode() { var h = new HashCode(); AddTo(ref h); return h.ToHashCode(); }
    public override string ToString() => $"{(Mean ? "mean" : "sum")} over [{string.Join(",", Axes)}] of [{Program}]";
}

public static partial class OpTable
{
    /// <summary>x·W + r (Passes/ResidualFusion): the residual added inside the GEMM; optimizer-made.</summary>
    public static readonly OpDef MatMulResidual = new("matmul_residual", 3, FusionClass.MatMul,
        (i, _) => throw new InvalidOperationException("matmul_residual nodes are made by the optimizer"),
        (x, n) => Cpu.ResidualKernel.Run(x, n), null);
}

/// <summary>The program of a fused elementwise group whose input <paramref name="Slot"/> is the product of the
/// node's first <paramref name="MatMulInputs"/> inputs (x, W, and the bias when <paramref name="Epilogue"/> is
/// set); the group's other inputs follow.</summary>
internal sealed record MatMulProgramAttrs(FusedProgram Program, int Slot, int MatMulInputs, EpilogueAttrs? Epilogue) : IOpAttrs
{
    public void AddTo(ref HashCode h) { Program.AddTo(ref h); h.Add(Slot); h.Add(MatMulInputs); h.Add(Epilogue is null); Epilogue?.AddTo(ref h); }
    public bool Equals(MatMulProgramAttrs? o) => o is not null && Program.Equals(o.Program) && Slot == o.Slot && MatMulInputs == o.MatMulInputs && Equals(Epilogue, o.Epilogue);
    public override int GetHashCode() { var h = new HashCode(); AddTo(ref h); return h.ToHashCode(); }
    public override string ToString() => $"[{Program}] on the product{(Epilogue is null ? "" : $" after {Epilogue}")}";
}

public static partial class OpTable
{
    /// <summary>A matmul (or matmul_epilogue) and the fused elementwise group that reads it, the group applied to
    /// the product in place as its epilogue (Passes/MatMulProgramFusion); optimizer-made.</summary>
    public static readonly OpDef MatMulProgram = new("matmul_program", -1, FusionClass.MatMul,
        (i, _) => throw new InvalidOperationException("matmul_program nodes are made by the optimizer"),
        (x, n) => Cpu.MatMulKernel.RunProgram(x, n), null);
}
