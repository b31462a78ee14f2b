// One row of the op table: everything Kiln knows about an op in one place (see docs/adding-an-op.md).
using Kiln.Runtime;

namespace Kiln.Graph;

/// <summary>How the optimizer may group an op with its neighbours.</summary>
public enum FusionClass { Leaf, View, Elementwise, Reduction, MatMul, Opaque }

/// <summary>Attributes of an op instance. Hash and equality are structural: they feed plan keys.</summary>
public interface IOpAttrs
{
    void AddTo(ref HashCode hash);
}

/// <summary>Shape and dtype of an op's result, or an exception naming the op, shapes and argument.</summary>
internal delegate (int[] Shape, DType DType) ShapeRule(Node[] inputs, IOpAttrs? attrs);

/// <summary>The CPU (reference) implementation: realised inputs in, realised output out.</summary>
internal delegate Realised CpuKernel(Realised[] inputs, Node node);

/// <summary>Gradient rule: lazy tensors for d(loss)/d(input i), or null where no gradient flows.</summary>
internal delegate Tensor?[] GradRule(GradContext ctx);

internal sealed record GradContext(Node Node, Tensor[] Inputs, Tensor Output, Tensor Upstream)
{
    public T Attrs<T>() where T : IOpAttrs => (T)Node.Attrs!;
}

public sealed class OpDef
{
    public string Name { get; }
    /// <summary>Number of inputs; -1 for variadic (concat).</summary>
    public int Arity { get; }
    public FusionClass Fusion { get; }
    internal ShapeRule Infer { get; }
    internal CpuKernel Cpu { get; }
    internal GradRule? Grad { get; }
    /// <summary>True when the CPU kernel computes in fp32 for bf16/f16 data (inputs widened, output narrowed).</summary>
    internal bool WidensHalf { get; }

    internal OpDef(string name, int arity, FusionClass fusion, ShapeRule infer, CpuKernel cpu, GradRule? grad, bool widensHalf = true)
    {
        Name = name; Arity = arity; Fusion = fusion; Infer = infer; Cpu = cpu; Grad = grad; WidensHalf = widensHalf;
    }

    public override string ToString() => Name;
}

// ---- attribute records (value semantics; arrays hashed element-wise) ----

internal sealed record AxesAttrs(int[] Axes, bool KeepDim) : IOpAttrs
{
    public void AddTo(ref HashCode h) { foreach (int a in Axes) h.Add(a); h.Add(KeepDim); }
    public override string ToString() => $"axes=[{string.Join(",", Axes)}] keepdim={KeepDim}";
    public bool Equals(AxesAttrs? o) => o is not null && Axes.AsSpan().SequenceEqual(o.Axes) && KeepDim == o.KeepDim;
    public override int GetHashCode() { var h = new HashCode(); AddTo(ref h); return h.ToHashCode(); }
}

internal sealed record VarAttrs(int[] Axes, bool KeepDim, int Correction) : IOpAttrs
{
    public void AddTo(ref HashCode h) { foreach (int a in Axes) h.Add(a); h.Add(KeepDim); h.Add(Correction); }
    public override string ToString() => $"axes=[{string.Join(",", Axes)}] keepdim={KeepDim} correction={Correction}";
    public bool Equals(VarAttrs? o) => o is not null && Axes.AsSpan().SequenceEqual(o.Axes) && KeepDim == o.KeepDim && Correction == o.Correction;
    public override int GetHashCode() { var h = new HashCode(); AddTo(ref h); return h.ToHashCode(); }
}

internal sealed record ShapeAttrs(int[] Shape) : IOpAttrs
{
    public void AddTo(ref HashCode h) { foreach (int a in Shape) h.Add(a); }
    public override string ToString() => Shapes.Format(Shape);
    public bool Equals(ShapeAttrs? o) => o is not null && Shape.AsSpan().SequenceEqual(o.Shape);
    public override int GetHashCode() { var h = new HashCode(); AddTo(ref h); return h.ToHashCode(); }
}

internal sealed record IntAttrs(int Value) : IOpAttrs
{
    public void AddTo(ref HashCode h) => h.Add(Value);
    public override string ToString() => Value.ToString();
}

internal sealed record ScalarAttrs(double Value) : IOpAttrs
{
    public void AddTo(ref HashCode h) => h.Add(Value);
    public override string ToString() => Value.ToString("R");
}

/// <summary>
/// lora_linear: y = x·W + s·(h·A)·B (+ bias). Inputs x, W, A, B, then the bias (<see cref="HasBias"/>), then the
/// branch input h (<see cref="HasBranch"/>: dropout(x) in training; without it the branch reads x itself).
/// </summary>
internal sealed record LoraAttrs(double Scale, bool HasBias, bool HasBranch) : IOpAttrs
{
    public int BiasIndex => HasBias ? 4 : -1;
    public int BranchIndex => HasBranch ? (HasBias ? 5 : 4) : 0;
    public void AddTo(ref HashCode h) { h.Add(Scale); h.Add(HasBias); h.Add(HasBranch); }
    public override string ToString() => $"scale={Scale:R}{(HasBias ? " bias" : "")}{(HasBranch ? " branch input" : "")}";
}

internal sealed record DTypeAttrs(DType To) : IOpAttrs
{
    public void AddTo(ref HashCode h) => h.Add(To);
    public override string ToString() => To.ShortName();
}

/// <summary>Slice of one axis with a positive step (start/stop already clamped).</summary>
internal sealed record SliceAttrs(int Axis, int Start, int Stop, int Step) : IOpAttrs
{
    public void AddTo(ref HashCode h) { h.Add(Axis); h.Add(Start); h.Add(Stop); h.Add(Step); }
    public override string ToString() => $"axis={Axis} {Start}:{Stop}:{Step}";
}

/// <summary>Constant padding: (before, after) per axis.</summary>
internal sealed record PadAttrs(int[] Before, int[] After, double Value) : IOpAttrs
{
    public void AddTo(ref HashCode h) { foreach (int a in Before) h.Add(a); foreach (int a in After) h.Add(a); h.Add(Value); }
    public override string ToString() => $"before=[{string.Join(",", Before)}] after=[{string.Join(",", After)}] value={Value}";
    public bool Equals(PadAttrs? o) => o is not null && Before.AsSpan().SequenceEqual(o.Before) && After.AsSpan().SequenceEqual(o.After) && Value.Equals(o.Value);
    public override int GetHashCode() { var h = new HashCode(); AddTo(ref h); return h.ToHashCode(); }
}

internal sealed record NormAttrs(double Eps) : IOpAttrs
{
    public void AddTo(ref HashCode h) => h.Add(Eps);
    public override string ToString() => $"eps={Eps}";
}

/// <summary>Keep the lower (or upper) triangle of the last two axes, offset by Diagonal; fill the rest.</summary>
internal sealed record TriangleAttrs(bool Lower, int Diagonal, double Fill) : IOpAttrs
{
    public void AddTo(ref HashCode h) { h.Add(Lower); h.Add(Diagonal); h.Add(Fill); }
    public override string ToString() => $"{(Lower ? "lower" : "upper")} diag={Diagonal} fill={Fill}";
}

/// <summary>Rotary embedding over the last axis, positions along axis -2 starting at Offset.</summary>
internal sealed record RopeAttrs(double Theta, bool Interleaved, int Offset, bool Inverse) : IOpAttrs
{
    public void AddTo(ref HashCode h) { h.Add(Theta); h.Add(Interleaved); h.Add(Offset); h.Add(Inverse); }
    public override string ToString() => $"theta={Theta} {(Interleaved ? "interleaved" : "half")} offset={Offset}{(Inverse ? " inverse" : "")}";
}

internal sealed record CrossEntropyAttrs(int IgnoreIndex, double LabelSmoothing) : IOpAttrs
{
    public void AddTo(ref HashCode h) { h.Add(IgnoreIndex); h.Add(LabelSmoothing); }
    public override string ToString() => $"ignore_index={IgnoreIndex} label_smoothing={LabelSmoothing}";
}

/// <summary>
/// A leaf filled with one value (Tensor.Full and the scalars of `x * 2`). The value is structure, not data:
/// it is part of the structural hash, so passes may rely on it (x * 1 → x) and plans stay valid.
/// </summary>
internal sealed record FillAttrs(double Value) : IOpAttrs
{
    // Compared by bits: double equality calls -0.0 and 0.0 equal, which let a plan whose constant folding made
    // x·(-0.0) = -0.0 answer for x·0.0 too (a cached plan is keyed by its fills).
    public bool Equals(FillAttrs? o) => o is not null && BitConverter.DoubleToInt64Bits(Value) == BitConverter.DoubleToInt64Bits(o.Value);
    public override int GetHashCode() => BitConverter.DoubleToInt64Bits(Value).GetHashCode();
    public void AddTo(ref HashCode h) => h.Add(BitConverter.DoubleToInt64Bits(Value));
    public override string ToString() => $"fill {Value}";
}

/// <summary>Data of a leaf created from user values; hashed by identity class only (never by data).</summary>
internal sealed record LeafAttrs(string Kind) : IOpAttrs
{
    public void AddTo(ref HashCode h) => h.Add(Kind);
    public override string ToString() => Kind;
}

/// <summary>One step of a fused elementwise program: op applied to operands (≥ 0: an earlier step, &lt; 0: input ~k).</summary>
internal readonly record struct FusedInstruction(OpDef Op, int A, int B);

/// <summary>A fused elementwise group as a program; the last step is the result.</summary>
internal sealed record FusedProgram(FusedInstruction[] Steps) : IOpAttrs
{
    public void AddTo(ref HashCode h)
    {
        foreach (var s in Steps) { h.Add(s.Op.Name); h.Add(s.A); h.Add(s.B); }
    }
    public bool Equals(FusedProgram? o) => ReferenceEquals(this, o) || (o is not null && Steps.AsSpan().SequenceEqual(o.Steps));

    // Computed once, and the same object equal at once: a cached plan's program is looked up by these on every
    // run (hashing a 100-step chain took ~1.5 µs).
    private int _hash;
    public override int GetHashCode()
    {
        if (_hash != 0) return _hash;
        var h = new HashCode(); AddTo(ref h);
        int v = h.ToHashCode();
        return _hash = v == 0 ? 1 : v;
    }

    public override string ToString() => string.Join("; ", Steps.Select((s, i) =>
        $"t{i}={s.Op.Name}({Operand(s.A)}{(s.Op.Arity > 1 ? "," + Operand(s.B) : "")})"));
    private static string Operand(int c) => c >= 0 ? $"t{c}" : $"in{~c}";
}

/// <summary>Activation applied after a matmul (+ bias) in its epilogue: an op name of the table, or none.</summary>
internal sealed record EpilogueAttrs(string? Activation) : IOpAttrs
{
    public void AddTo(ref HashCode h) => h.Add(Activation);
    public override string ToString() => Activation ?? "bias";
}
