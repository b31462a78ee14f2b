// The op table: one row per op with its shape rule, CPU kernel and gradient rule. The grouping below
// follows the op families; docs/adding-an-op.md walks through adding a row.
using Kiln.Cpu;
using Kiln.Runtime;
using U32 = Kiln.Cpu.UnaryKernels<float>;
using U64 = Kiln.Cpu.UnaryKernels<double>;

namespace Kiln.Graph;

public static partial class OpTable
{
    /// <summary>A leaf holding data (created from arrays, fills, random draws or a detached value).</summary>
    public static readonly OpDef Constant = new("constant", 0, FusionClass.Leaf,
        (_, _) => throw new InvalidOperationException("constant nodes are created with their value"),
        (_, n) => throw new InvalidOperationException($"constant node %{n.Id} has no value"), null, widensHalf: false);

    // ---------------- unary (float) ----------------
    private static OpDef Unary(string name, SpanMap<float> f32, SpanMap<double> f64, GradRule grad) =>
        new(name, 1, FusionClass.Elementwise, (i, _) => ShapeRules.UnaryFloat(name, i), (x, _) => Elementwise.Unary(x[0], f32, f64), grad);

    public static readonly OpDef Neg = Unary("neg", U32.Neg, U64.Neg, c => [-c.Upstream]);
    public static readonly OpDef Abs = Unary("abs", U32.Abs, U64.Abs, c => [c.Upstream * Sign(c.Inputs[0])]);
    public static readonly OpDef Exp = Unary("exp", U32.Exp, U64.Exp, c => [c.Upstream * c.Output]);
    public static readonly OpDef Log = Unary("log", U32.Log, U64.Log, c => [c.Upstream / c.Inputs[0]]);
    public static readonly OpDef Sqrt = Unary("sqrt", U32.Sqrt, U64.Sqrt, c => [c.Upstream / (c.Output * 2)]);
    public static readonly OpDef Rsqrt = Unary("rsqrt", U32.Rsqrt, U64.Rsqrt, c => [c.Upstream * c.Output * c.Output * c.Output * -0.5]);
    public static readonly OpDef Sin = Unary("sin", U32.Sin, U64.Sin, c => [c.Upstream * c.Inputs[0].Cos()]);
    public static readonly OpDef Cos = Unary("cos", U32.Cos, U64.Cos, c => [-c.Upstream * c.Inputs[0].Sin()]);
    public static readonly OpDef Tanh = Unary("tanh", U32.Tanh, U64.Tanh, c => [c.Upstream * (1 - c.Output.Square())]);
    public static readonly OpDef Sigmoid = Unary("sigmoid", U32.Sigmoid, U64.Sigmoid, c => [c.Upstream * c.Output * (1 - c.Output)]);
    public static readonly OpDef Relu = Unary("relu", U32.Relu, U64.Relu, c => [Ops.Where(c.Inputs[0] > 0, c.Upstream, 0)]);
    public static readonly OpDef Square = Unary("square", U32.Square, U64.Square, c => [c.Upstream * c.Inputs[0] * 2]);
    public static readonly OpDef Erf = Unary("erf", U32.Erf, U64.Erf, c => [c.Upstream * (-c.Inputs[0].Square()).Exp() * (2 / Math.Sqrt(Math.PI))]);
    public static readonly OpDef Silu = Unary("silu", U32.Silu, U64.Silu, c =>
    {
        var x = c.Inputs[0]; var s = x.Sigmoid();
        return [c.Upstream * s * (1 + x * (1 - s))];
    });

    /// <summary>
    /// gelu_tanh's derivative as one op (the backward reads upstream · gelu_tanh_grad(x)), so the optimizer can see it:
    /// on CUDA a product times it is one GEMM with cuBLASLt's DGELU epilogue (Passes/MatMulProgramFusion).
    /// With t = tanh(u), u = k0·(x + k1·x³): d = ½(1 + t) + ½x(1 − t²)u′, and d′ = (1 − t²)(u′ + ½x(u″ − 2t·u′²)).
    /// </summary>
    public static readonly OpDef GeluTanhGrad = Unary("gelu_tanh_grad", U32.GeluTanhGrad, U64.GeluTanhGrad, c =>
    {
        const double k0 = 0.7978845608028654, k1 = 0.044715;
        var x = c.Inputs[0];
        var t = ((x + x * x * x * k1) * k0).Tanh();
        var du = (1 + x.Square() * (3 * k1)) * k0;
        var d2 = (1 - t.Square()) * (du + x * 0.5 * (x * (6 * k0 * k1) - t * du.Square() * 2));
        return [c.Upstream * d2];
    });

    public static readonly OpDef GeluTanh = Unary("gelu_tanh", U32.GeluTanh, U64.GeluTanh, c => [c.Upstream * Tensor.Apply(GeluTanhGrad, null, c.Inputs[0])]);
    public static readonly OpDef GeluErf = Unary("gelu_erf", U32.GeluErf, U64.GeluErf, c =>
    {
        var x = c.Inputs[0];
        var d = (1 + (x * 0.7071067811865476).Erf()) * 0.5 + x * (x.Square() * -0.5).Exp() * 0.3989422804014327;
        return [c.Upstream * d];
    });

    private static Tensor Sign(Tensor x) => Ops.Where(x > 0, x.ScalarLike(1), Ops.Where(x < 0, x.ScalarLike(-1), x.ScalarLike(0)));

    // ---------------- binary (broadcasting) ----------------
    private static OpDef Binary(string name, CpuKernel k, GradRule? grad, bool floatOnly = false) =>
        new(name, 2, FusionClass.Elementwise, (i, _) => ShapeRules.Binary(name, i, floatOnly), k, grad);

    public static readonly OpDef Add = Binary("add", (x, n) => BinaryKernels.Arith<AddRow<float>, AddRow<double>, AddRow<int>, AddRow<long>>(x[0], x[1], n),
        c => [SumTo(c.Upstream, c.Inputs[0]), SumTo(c.Upstream, c.Inputs[1])]);
    public static readonly OpDef Sub = Binary("sub", (x, n) => BinaryKernels.Arith<SubRow<float>, SubRow<double>, SubRow<int>, SubRow<long>>(x[0], x[1], n),
        c => [SumTo(c.Upstream, c.Inputs[0]), SumTo(-c.Upstream, c.Inputs[1])]);
    public static readonly OpDef Mul = Binary("mul", (x, n) => BinaryKernels.Arith<MulRow<float>, MulRow<double>, MulRow<int>, MulRow<long>>(x[0], x[1], n),
        c => [SumTo(c.Upstream * c.Inputs[1], c.Inputs[0]), SumTo(c.Upstream * c.Inputs[0], c.Inputs[1])]);
    public static readonly OpDef Div = Binary("div", (x, n) => BinaryKernels.Arith<DivRow<float>, DivRow<double>, DivRow<int>, DivRow<long>>(x[0], x[1], n),
        c => [SumTo(c.Upstream / c.Inputs[1], c.Inputs[0]), SumTo(-c.Upstream * c.Inputs[0] / c.Inputs[1].Square(), c.Inputs[1])]);
    public static readonly OpDef Maximum = Binary("maximum", (x, n) => BinaryKernels.Arith<MaxRow<float>, MaxRow<double>, MaxRow<int>, MaxRow<long>>(x[0], x[1], n),
        c => MinMaxGrad(c, c.Inputs[0] > c.Inputs[1]));
    public static readonly OpDef Minimum = Binary("minimum", (x, n) => BinaryKernels.Arith<MinRow<float>, MinRow<double>, MinRow<int>, MinRow<long>>(x[0], x[1], n),
        c => MinMaxGrad(c, c.Inputs[0] < c.Inputs[1]));
    public static readonly OpDef Pow = Binary("pow", (x, n) => x[0].DType == DType.Float32
            ? Elementwise.Binary<float, float, PowRow<float>>(x[0], x[1], n.Shape, DType.Float32)
            : Elementwise.Binary<double, double, PowRow<double>>(x[0], x[1], n.Shape, DType.Float64),
        c =>
        {
            Tensor a = c.Inputs[0], b = c.Inputs[1], g = c.Upstream;
            return [SumTo(g * b * Ops.Pow(a, b - 1), a), SumTo(g * c.Output * a.Log(), b)];
        }, floatOnly: true);

    /// <summary>Gradient of max/min: to the winner; split evenly on ties (as torch.maximum does).</summary>
    private static Tensor?[] MinMaxGrad(GradContext c, Tensor firstWins)
    {
        Tensor g = c.Upstream, tie = Ops.Eq(c.Inputs[0], c.Inputs[1]);
        var half = g * 0.5;
        var ga = Ops.Where(firstWins, g, Ops.Where(tie, half, 0));
        var gb = Ops.Where(firstWins, 0, Ops.Where(tie, half, g));
        return [SumTo(ga, c.Inputs[0]), SumTo(gb, c.Inputs[1])];
    }

    private static OpDef Comparison<TC>(string name) where TC : ICompare =>
        new(name, 2, FusionClass.Elementwise, (i, _) => ShapeRules.Comparison(name, i), (x, n) => BinaryKernels.Cmp<TC>(x[0], x[1], n), null);

    public static readonly OpDef Eq = Comparison<CmpEq>("eq");
    public static readonly OpDef Ne = Comparison<CmpNe>("ne");
    public static readonly OpDef Lt = Comparison<CmpLt>("lt");
    public static readonly OpDef Le = Comparison<CmpLe>("le");
    public static readonly OpDef Gt = Comparison<CmpGt>("gt");
    public static readonly OpDef Ge = Comparison<CmpGe>("ge");

    public static readonly OpDef Where = new("where", 3, FusionClass.Elementwise, (i, _) =>
        {
            if (i[0].DType != DType.Bool) throw ShapeRules.Error("where", $"condition must be bool, got {i[0].DType.ShortName()}", i);
            ShapeRules.RequireSameDType("where", i[1], i[2]);
            var s = Shapes.TryBroadcast(i[0].Shape, i[1].Shape) is { } s1 ? Shapes.TryBroadcast(s1, i[2].Shape) : null;
            return (s ?? throw ShapeRules.Error("where", "condition, a and b cannot be broadcast together", i), i[1].DType);
        },
        (x, n) => x[1].DType switch
        {
            DType.Float32 => Elementwise.Where<float>(x[0], x[1], x[2], n.Shape, DType.Float32),
            DType.Float64 => Elementwise.Where<double>(x[0], x[1], x[2], n.Shape, DType.Float64),
            DType.Int32 => Elementwise.Where<int>(x[0], x[1], x[2], n.Shape, DType.Int32),
            DType.Int64 => Elementwise.Where<long>(x[0], x[1], x[2], n.Shape, DType.Int64),
            DType.Bool => Elementwise.Where<bool>(x[0], x[1], x[2], n.Shape, DType.Bool),
            var t => throw new NotSupportedException($"where: dtype {t.ShortName()}"),
        },
        c => [null, SumTo(Ops.Where(c.Inputs[0], c.Upstream, 0), c.Inputs[1]), SumTo(Ops.Where(c.Inputs[0], 0, c.Upstream), c.Inputs[2])]);

    public static readonly OpDef Cast = new("cast", 1, FusionClass.Elementwise, (i, a) => (i[0].Shape, ((DTypeAttrs)a!).To),
        (x, n) => Cpu.Convert.Cast(x[0], n.DType),
        c => c.Inputs[0].DType.IsFloat() && c.Node.DType.IsFloat() ? [c.Upstream.Cast(c.Inputs[0].DType)] : [null],
        widensHalf: false);

    /// <summary>Sums a broadcast gradient back to the shape of the input it flowed from.</summary>
    internal static Tensor SumTo(Tensor g, Tensor like)
    {
        var target = like.ShapeArray;
        if (Shapes.Equal(g.ShapeArray, target)) return g;
        int lead = g.Rank - target.Length;
        var axes = new List<int>();
        for (int d = 0; d < g.Rank; d++)
            if (d < lead || (target[d - lead] == 1 && g.ShapeArray[d] != 1)) axes.Add(d);
        var s = axes.Count > 0 ? g.Sum(axes.ToArray(), keepDim: true) : g;
        return s.Reshape(target);
    }
}
