// Every op's forward pass against a naive double-precision loop written in this file (never against Kiln),
// over awkward sizes, broadcasting, non-contiguous views and every dtype where the op is meaningful.
// Reduced-precision floats (bf16/f16) are computed by Kiln in fp32 and rounded: the reference runs on the
// rounded inputs and the tolerance covers the final rounding.
namespace Kiln.Tests.Ops;

public class NaiveReferenceTests
{
    private static readonly DType[] Floats = [DType.Float32, DType.Float64, DType.BFloat16, DType.Float16];
    private static readonly DType[] Ints = [DType.Int32, DType.Int64];

    // ======================= reference self-check =======================

    [Fact]
    public void ReferenceErfMatchesKnownValues()
    {
        // Abramowitz & Stegun / high-precision tables.
        Assert.Equal(0.0, RefMath.Erf(0));
        Assert.Equal(0.52049987781304654, RefMath.Erf(0.5), 1e-15);
        Assert.Equal(0.84270079294971487, RefMath.Erf(1), 1e-15);
        Assert.Equal(0.99532226501895273, RefMath.Erf(2), 1e-15);
        Assert.Equal(0.99959304798255504, RefMath.Erf(2.5), 1e-15);
        Assert.Equal(0.99997790950300141, RefMath.Erf(3), 1e-15);
        Assert.Equal(-0.84270079294971487, RefMath.Erf(-1), 1e-15);
    }

    // ======================= unary =======================

    private static readonly Dictionary<string, (Func<Tensor, Tensor> Op, Func<double, double> Ref, double Lo, double Hi)> UnaryOps = new()
    {
        ["neg"] = (x => -x, v => -v, -4, 4),
        ["abs"] = (x => x.Abs(), Math.Abs, -4, 4),
        ["exp"] = (x => x.Exp(), Math.Exp, -4, 4),
        ["log"] = (x => x.Log(), Math.Log, 0.05, 6),
        ["sqrt"] = (x => x.Sqrt(), Math.Sqrt, 0, 6),
        ["rsqrt"] = (x => x.Rsqrt(), v => 1 / Math.Sqrt(v), 0.05, 6),
        ["sin"] = (x => x.Sin(), Math.Sin, -7, 7),
        ["cos"] = (x => x.Cos(), Math.Cos, -7, 7),
        ["tanh"] = (x => x.Tanh(), Math.Tanh, -4, 4),
        ["sigmoid"] = (x => x.Sigmoid(), RefMath.Sigmoid, -9, 9),
        ["relu"] = (x => x.Relu(), v => v > 0 ? v : 0, -4, 4),
        ["gelu_erf"] = (x => x.Gelu(), RefMath.GeluErf, -5, 5),
        ["gelu_tanh"] = (x => x.Gelu(GeluApproximation.Tanh), RefMath.GeluTanh, -5, 5),
        ["gelu_tanh_grad"] = (x => Tensor.Apply(Kiln.Graph.OpTable.GeluTanhGrad, null, x), RefMath.GeluTanhGrad, -5, 5),
        ["silu"] = (x => x.Silu(), v => v * RefMath.Sigmoid(v), -6, 6),
        ["square"] = (x => x.Square(), v => v * v, -4, 4),
        ["erf"] = (x => x.Erf(), RefMath.Erf, -4, 4),
    };

    public static TheoryData<string, DType, int> UnaryCases()
    {
        var d = new TheoryData<string, DType, int>();
        foreach (var op in UnaryOps.Keys)
            foreach (var dt in Floats)
                foreach (int n in new[] { 0, 1, 7, 33, 257, 1000, 70000 })
                    d.Add(op, dt, n);
        return d;
    }

    [Theory]
    [MemberData(nameof(UnaryCases))]
    public void Unary(string op, DType dt, int n)
    {
        var (f, r, lo, hi) = UnaryOps[op];
        var x = Nd.Random([n], seed: n * 31 + op.Length, lo, hi).RoundTo(dt);
        var y = f(x.ToTensor(dt));
        Assert.Equal(dt, y.DType);
        Nd.AssertClose(x.Map(r), y, Nd.Tol(dt), $"{op} n={n} {dt}");
    }

    [Theory]
    [InlineData("exp")]
    [InlineData("gelu_erf")]
    [InlineData("sigmoid")]
    public void UnaryOnNonContiguousViews(string op)
    {
        var (f, r, lo, hi) = UnaryOps[op];
        var x = Nd.Random([6, 9], 5, lo, hi);
        foreach (var dt in new[] { DType.Float32, DType.Float64 })
        {
            var t = x.ToTensor(dt);
            Nd.AssertClose(x.RoundTo(dt).T().Map(r), f(t.T), Nd.Tol(dt), $"{op} of transpose {dt}");
            Nd.AssertClose(x.RoundTo(dt).Slice(1, 1, 9, 3).Map(r), f(t.Slice(1, 1, 9, 3)), Nd.Tol(dt), $"{op} of slice step 3 {dt}");
            Nd.AssertClose(x.RoundTo(dt).Slice(0, 2, 3).ExpandTo([4, 1, 9]).Map(r),
                f(t.Slice(0, 2, 3).Expand(4, 1, 9)), Nd.Tol(dt), $"{op} of expand {dt}");
        }
    }

    [Fact]
    public void UnarySpecialValues()
    {
        var x = new Nd([6], [0, -0.0, double.PositiveInfinity, double.NegativeInfinity, double.NaN, 1e-30]);
        var t = x.ToTensor(DType.Float64);
        Close.AssertAll(x.Data.Select(Math.Exp).ToArray(), t.Exp().ToArray<double>(), 1e-15, "exp specials");
        Close.AssertAll(x.Data.Select(RefMath.Sigmoid).ToArray(), t.Sigmoid().ToArray<double>(), 1e-15, "sigmoid specials");
        Close.AssertAll(x.Data.Select(Math.Tanh).ToArray(), t.Tanh().ToArray<double>(), 1e-15, "tanh specials");
        Close.AssertAll(x.Data.Select(v => v > 0 ? v : (double.IsNaN(v) ? v : 0)).ToArray(), t.Relu().ToArray<double>(), 0, "relu specials");
    }

    // ======================= binary (broadcasting, non-contiguous) =======================

    private static readonly Dictionary<string, (Func<Tensor, Tensor, Tensor> Op, Func<double, double, double> Ref)> BinaryOps = new()
    {
        ["add"] = ((a, b) => a + b, (a, b) => a + b),
        ["sub"] = ((a, b) => a - b, (a, b) => a - b),
        ["mul"] = ((a, b) => a * b, (a, b) => a * b),
        ["div"] = ((a, b) => a / b, (a, b) => a / b),
        ["pow"] = (Kiln.Ops.Pow, Math.Pow),
        ["maximum"] = (Kiln.Ops.Maximum, Math.Max),
        ["minimum"] = (Kiln.Ops.Minimum, Math.Min),
        ["eq"] = (Kiln.Ops.Eq, (a, b) => a == b ? 1 : 0),
        ["ne"] = (Kiln.Ops.Ne, (a, b) => a != b ? 1 : 0),
        ["lt"] = ((a, b) => a < b, (a, b) => a < b ? 1 : 0),
        ["le"] = ((a, b) => a <= b, (a, b) => a <= b ? 1 : 0),
        ["gt"] = ((a, b) => a > b, (a, b) => a > b ? 1 : 0),
        ["ge"] = ((a, b) => a >= b, (a, b) => a >= b ? 1 : 0),
    };

    private static bool IsComparison(string op) => op is "eq" or "ne" or "lt" or "le" or "gt" or "ge";

    public static TheoryData<string, DType> BinaryCases()
    {
        var d = new TheoryData<string, DType>();
        foreach (var op in BinaryOps.Keys)
        {
            foreach (var dt in Floats) d.Add(op, dt);
            if (op is "add" or "sub" or "mul" or "maximum" or "minimum" || IsComparison(op))
                foreach (var dt in Ints) d.Add(op, dt);
        }
        return d;
    }

    /// <summary>Operand values per op: positive bases for pow, denominators away from 0, ties for comparisons.</summary>
    private static Nd Values(string op, bool second, int[] shape, int seed, DType dt)
    {
        if (dt.IsInteger()) return Nd.RandomInts(shape, seed, IsComparison(op) ? -3 : -40, IsComparison(op) ? 3 : 40);
        if (IsComparison(op)) return Nd.RandomInts(shape, seed, -4, 4).Map(v => v * 0.5);
        if (op == "pow") return second ? Nd.Random(shape, seed, -2.5, 2.5) : Nd.Random(shape, seed, 0.1, 3);
        if (op == "div" && second) { var r = new Random(seed); return Nd.Random(shape, seed + 1, 0.5, 2).Map(v => r.Next(2) == 0 ? v : -v); }
        return Nd.Random(shape, seed, -3, 3);
    }

    /// <summary>
    /// Operand layouts: (name, build a, build b). Each builder gets a value factory and returns the reference
    /// array and the Kiln tensor built with the same view operations.
    /// </summary>
    private delegate (Nd Ref, Tensor T) Operand(Func<int[], Nd> values, DType dt);

    private static Operand Dense(params int[] shape) => (v, dt) => { var x = v(shape).RoundTo(dt); return (x, x.ToTensor(dt)); };
    private static Operand Transposed(int rows, int cols) => (v, dt) => { var x = v([cols, rows]).RoundTo(dt); return (x.T(), x.ToTensor(dt).T); };
    private static Operand SliceStep(int[] shape, int axis, int start, int stop, int step) =>
        (v, dt) => { var x = v(shape).RoundTo(dt); return (x.Slice(axis, start, stop, step), x.ToTensor(dt).Slice(axis, start, stop, step)); };
    private static Operand Expanded(int[] shape, int[] to) => (v, dt) => { var x = v(shape).RoundTo(dt); return (x.ExpandTo(to), x.ToTensor(dt).Expand(to)); };
    private static Operand Permuted(int[] shape, int[] perm) => (v, dt) => { var x = v(shape).RoundTo(dt); return (x.Permute(perm), x.ToTensor(dt).Permute(perm)); };

    private static readonly (string Name, Operand A, Operand B)[] Layouts =
    [
        ("same (7,33)", Dense(7, 33), Dense(7, 33)),
        ("(3,1,5) with (4,1)", Dense(3, 1, 5), Dense(4, 1)),
        ("(4,1) with (3,1,5)", Dense(4, 1), Dense(3, 1, 5)),
        ("scalar with (2,3)", Dense(), Dense(2, 3)),
        ("(2,3) with scalar", Dense(2, 3), Dense()),
        ("scalar with scalar", Dense(), Dense()),
        ("(1,) with (4,3)", Dense(1), Dense(4, 3)),
        ("(5,) with (4,5)", Dense(5), Dense(4, 5)),
        ("(4,1) with (1,6)", Dense(4, 1), Dense(1, 6)),
        ("(2,1,3,1) with (5,1,4)", Dense(2, 1, 3, 1), Dense(5, 1, 4)),
        ("empty (0,3) with (3,)", Dense(0, 3), Dense(3)),
        ("a.T with dense", Transposed(4, 5), Dense(4, 5)),
        ("dense with b.T", Dense(6, 3), Transposed(6, 3)),
        ("a.T with b.T", Transposed(5, 7), Transposed(5, 7)),
        ("slice step 2 with dense", SliceStep([4, 11], 1, 1, 11, 2), Dense(4, 5)),
        ("dense with slice step 3 on axis 0", Dense(3, 4), SliceStep([9, 4], 0, 0, 9, 3)),
        ("expand with slice", Expanded([4, 1], [3, 4, 5]), SliceStep([6, 4, 5], 0, 1, 6, 2)),
        ("expand (1,5)->(4,5) with b.T", Expanded([1, 5], [4, 5]), Transposed(4, 5)),
        ("permuted 3-d with broadcast row", Permuted([3, 4, 5], [2, 0, 1]), Dense(1, 1, 4)),
        ("transposed with column broadcast", Transposed(6, 8), Dense(6, 1)),
        ("large contiguous 70000", Dense(70000), Dense(70000)),
        ("large (300,257) with (257,)", Dense(300, 257), Dense(257)),
        ("large (257,300) with (257,1)", Dense(257, 300), Dense(257, 1)),
        ("large scalar with 70000", Dense(), Dense(70000)),
        ("large transposed (260,270)", Transposed(260, 270), Dense(260, 270)),
        ("large strided row 70000", SliceStep([140000], 0, 1, 140000, 2), Dense(70000)),
    ];

    [Theory]
    [MemberData(nameof(BinaryCases))]
    public void Binary(string op, DType dt)
    {
        var (f, r) = BinaryOps[op];
        int seed = 100;
        foreach (var (name, la, lb) in Layouts)
        {
            seed++;
            int s = seed;
            var (a, ta) = la(shape => Values(op, false, shape, s, dt), dt);
            var (b, tb) = lb(shape => Values(op, true, shape, s + 1000, dt), dt);
            var y = f(ta, tb);
            Assert.Equal(IsComparison(op) ? DType.Bool : dt, y.DType);
            var expected = Nd.Zip(a, b, r);
            double tol = IsComparison(op) || dt.IsInteger() ? 0 : op == "pow" && dt == DType.Float64 ? 1e-13 : Nd.Tol(dt);
            Nd.AssertClose(expected, y, tol, $"{op} {dt} [{name}]");
        }
    }

    [Fact]
    public void IntegerArithmeticIsExactBeyondFloatPrecision()
    {
        // Values above 2^24 (int32) and 2^53 (int64) would be rounded by any float detour.
        var a32 = Tensor.FromArray(new[] { 16777217, -16777219, int.MaxValue - 1 });
        var b32 = Tensor.FromArray(new[] { 2, 3, 1 });
        Assert.Equal(new[] { 16777219, -16777216, int.MaxValue }, (a32 + b32).ToArray<int>());
        Assert.Equal(new[] { 33554434, -50331657, int.MaxValue - 1 }, (a32 * b32).ToArray<int>());
        var a64 = Tensor.FromArray(new[] { (1L << 53) + 1, -(1L << 60) - 3 });
        var b64 = Tensor.FromArray(new[] { 2L, 1L });
        Assert.Equal(new[] { (1L << 53) + 3, -(1L << 60) - 2 }, (a64 + b64).ToArray<long>());
        Assert.Equal(new[] { (1L << 53) - 1, -(1L << 60) - 4 }, (a64 - b64).ToArray<long>());
        Assert.Equal(new[] { (1L << 53) + 1, 1L }, Kiln.Ops.Maximum(a64, b64).ToArray<long>());
        Assert.Equal(new[] { 2L, -(1L << 60) - 3 }, Kiln.Ops.Minimum(a64, b64).ToArray<long>());
        Assert.Equal(new[] { true, false }, Kiln.Ops.Gt(a64, Tensor.FromArray(new[] { 1L << 53, 0L })).ToArray<bool>());
    }

    [Fact]
    public void MixedDTypesPromote()
    {
        var i = Nd.RandomInts([3, 4], 1, -5, 5);
        var f = Nd.Random([4], 2);
        var y = i.ToTensor(DType.Int32) + f.ToTensor(DType.Float32);
        Assert.Equal(DType.Float32, y.DType);
        Nd.AssertClose(Nd.Zip(i, f.RoundTo(DType.Float32), (p, q) => p + q), y, 1e-6, "i32 + f32");
        var z = f.ToTensor(DType.Float32) * f.ToTensor(DType.Float64);
        Assert.Equal(DType.Float64, z.DType);
        Nd.AssertClose(Nd.Zip(f.RoundTo(DType.Float32), f, (p, q) => p * q), z, 1e-12, "f32 * f64");
        var w = f.ToTensor(DType.BFloat16) + f.ToTensor(DType.Float16);
        Assert.Equal(DType.Float32, w.DType);
        Nd.AssertClose(Nd.Zip(f.RoundTo(DType.BFloat16), f.RoundTo(DType.Float16), (p, q) => p + q), w, 1e-6, "bf16 + f16");
    }

    // ======================= where =======================

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    [InlineData(DType.BFloat16)]
    [InlineData(DType.Float16)]
    [InlineData(DType.Int32)]
    [InlineData(DType.Int64)]
    public void Where(DType dt)
    {
        var cases = new (string Name, int[] C, int[] A, int[] B, bool TransposeC)[]
        {
            ("same", [4, 5], [4, 5], [4, 5], false),
            ("cond (3,1,5), a (4,1), b (5,)", [3, 1, 5], [4, 1], [5], false),
            ("cond (2,3), a scalar, b (2,3)", [2, 3], [], [2, 3], false),
            ("cond (4,1), a (1,6), b scalar", [4, 1], [1, 6], [], false),
            ("transposed cond (6,4)", [4, 6], [6, 4], [6, 1], true),
            ("empty", [0, 3], [3], [0, 3], false),
            ("large", [300, 257], [257], [300, 1], false),
        };
        int seed = 7;
        foreach (var (name, cs, as_, bs, tr) in cases)
        {
            seed += 3;
            var c = Nd.RandomInts(cs, seed, 0, 1);
            var a = (dt.IsInteger() ? Nd.RandomInts(as_, seed + 1, -50, 50) : Nd.Random(as_, seed + 1)).RoundTo(dt);
            var b = (dt.IsInteger() ? Nd.RandomInts(bs, seed + 2, -50, 50) : Nd.Random(bs, seed + 2)).RoundTo(dt);
            var tc = c.ToTensor(DType.Bool);
            if (tr) { tc = tc.T; c = c.T(); }
            var y = Kiln.Ops.Where(tc, a.ToTensor(dt), b.ToTensor(dt));
            Assert.Equal(dt, y.DType);
            Nd.AssertClose(Nd.Zip3(c, a, b, (p, q, r) => p != 0 ? q : r), y, 0, $"where {dt} [{name}]");
        }
    }

    // ======================= reductions =======================

    private static readonly (int[] Shape, int[]?[] Axes)[] ReduceShapes =
    [
        ([7, 33], [null, [0], [1], [-1], [0, 1]]),
        ([2, 3, 257], [null, [0], [1], [2], [0, 2], [-2, -1]]),
        ([1, 1], [null, [0], [1]]),
        ([5], [null, [0]]),
        ([3, 1, 4, 2], [[1], [0, 3], [1, 2]]),
    ];

    public static TheoryData<string, DType> ReductionCases()
    {
        var d = new TheoryData<string, DType>();
        foreach (var k in new[] { "sum", "mean", "max", "min", "argmax", "logsumexp", "var", "var0" })
            foreach (var dt in Floats) d.Add(k, dt);
        d.Add("sum", DType.Int32);
        d.Add("sum", DType.Int64);
        return d;
    }

    private static Tensor ReduceKiln(string kind, Tensor x, int[]? axes, bool keep) => kind switch
    {
        "sum" => x.Sum(axes, keep),
        "mean" => x.Mean(axes, keep),
        "max" => x.Max(axes, keep),
        "min" => x.Min(axes, keep),
        "argmax" => x.ArgMax(axes![0], keep),
        "logsumexp" => x.LogSumExp(axes, keep),
        "var" => x.Var(axes, keep),
        "var0" => x.Var(axes, keep, correction: 0),
        _ => throw new ArgumentException(kind),
    };

    private static Func<List<double>, double> ReduceRef(string kind) => kind switch
    {
        "sum" => Nd.Sum,
        "mean" => v => Nd.Sum(v) / v.Count,
        "max" => v => v.Max(),
        "min" => v => v.Min(),
        "argmax" => v => v.IndexOf(v.Max()),      // first maximum
        "logsumexp" => Nd.LogSumExp,
        "var" => v => Nd.Variance(v, 1),
        "var0" => v => Nd.Variance(v, 0),
        _ => throw new ArgumentException(kind),
    };

    [Theory]
    [MemberData(nameof(ReductionCases))]
    public void Reduction(string kind, DType dt)
    {
        int seed = 300;
        foreach (var (shape, axesList) in ReduceShapes)
            foreach (var axes in axesList)
            {
                if (kind == "argmax" && (axes is null || axes.Length != 1)) continue;
                foreach (bool keep in new[] { false, true })
                {
                    var x = (dt.IsInteger() ? Nd.RandomInts(shape, ++seed, -1000, 1000) : Nd.Random(shape, ++seed, -3, 3)).RoundTo(dt);
                    var y = ReduceKiln(kind, x.ToTensor(dt), axes, keep);
                    var allAxes = axes ?? Enumerable.Range(0, shape.Length).ToArray();
                    var expected = x.Reduce(allAxes, keep, ReduceRef(kind));
                    Assert.Equal(kind == "argmax" ? DType.Int64 : dt, y.DType);
                    double tol = kind == "argmax" || dt.IsInteger() ? 0 : dt == DType.Float64 ? 1e-11 : Nd.Tol(dt);
                    Nd.AssertClose(expected, y, tol, $"{kind} {dt} shape {Nd.Fmt(shape)} axes [{string.Join(",", axes ?? [])}] keepDim={keep}");
                }
            }
    }

    [Theory]
    [InlineData(DType.Int32)]
    [InlineData(DType.Int64)]
    public void IntegerMaxMinArgMaxReductions(DType dt)
    {
        // PyTorch reduces integer tensors with max/min/argmax; exact results are expected.
        var x = Nd.RandomInts([7, 33], 77, -1000, 1000);
        foreach (int axis in new[] { 0, 1 })
            foreach (bool keep in new[] { false, true })
            {
                string what = $"{dt} axis {axis} keepDim={keep}";
                Nd.AssertClose(x.Reduce([axis], keep, v => v.Max()), x.ToTensor(dt).Max([axis], keep), 0, "max " + what);
                Nd.AssertClose(x.Reduce([axis], keep, v => v.Min()), x.ToTensor(dt).Min([axis], keep), 0, "min " + what);
                Nd.AssertClose(x.Reduce([axis], keep, v => v.IndexOf(v.Max())), x.ToTensor(dt).ArgMax(axis, keep), 0, "argmax " + what);
            }
        Nd.AssertClose(new Nd([], [x.Data.Max()]), x.ToTensor(dt).Max(), 0, $"max of all {dt}");
    }

    [Theory]
    [InlineData("sum")]
    [InlineData("mean")]
    [InlineData("max")]
    [InlineData("logsumexp")]
    [InlineData("var")]
    public void ReductionOverNonContiguousAndMultiThreaded(string kind)
    {
        // Permuted input (reduced axes not last in memory) and a reduction large enough to use several threads.
        var x = Nd.Random([5, 3, 4], 11);
        foreach (var dt in new[] { DType.Float32, DType.Float64 })
        {
            var t = x.ToTensor(dt).Permute(1, 2, 0);
            var xr = x.RoundTo(dt).Permute(1, 2, 0);
            foreach (var axes in new[] { new[] { 0 }, [2], [0, 2] })
                Nd.AssertClose(xr.Reduce(axes, false, ReduceRef(kind)), ReduceKiln(kind, t, axes, false), dt == DType.Float64 ? 1e-11 : 1e-5, $"{kind} of permuted {dt} axes [{string.Join(",", axes)}]");
            var big = Nd.Random([3, 25000], 12);
            Nd.AssertClose(big.RoundTo(dt).Reduce([1], true, ReduceRef(kind)), ReduceKiln(kind, big.ToTensor(dt), [1], true), dt == DType.Float64 ? 1e-11 : 1e-5, $"{kind} (3,25000) axis 1 {dt}");
            Nd.AssertClose(big.RoundTo(dt).Reduce([0], false, ReduceRef(kind)), ReduceKiln(kind, big.ToTensor(dt), [0], false), dt == DType.Float64 ? 1e-11 : 1e-5, $"{kind} (3,25000) axis 0 {dt}");
        }
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    [InlineData(DType.Int32)]
    [InlineData(DType.Int64)]
    public void SumOverEmptyAxisIsZero(DType dt)
    {
        var x = new Nd([4, 0, 3], []).ToTensor(dt);
        Nd.AssertClose(new Nd([4, 3], new double[12]), x.Sum([1]), 0, "sum over size-0 axis");
        Nd.AssertClose(new Nd([4, 1, 3], new double[12]), x.Sum([1], keepDim: true), 0, "sum over size-0 axis keepDim");
        Nd.AssertClose(new Nd([], [0]), x.Sum(), 0, "sum of empty tensor");
        Nd.AssertClose(new Nd([0], []), x.Sum([0, 2]), 0, "sum leaving a size-0 axis");
        if (dt.IsFloat())
            Assert.True(double.IsNaN(x.Mean([1]).ToArray<double>()[0]), "mean over a size-0 axis is NaN (0/0), as in PyTorch");
    }

    [Fact]
    public void ReductionSpecialValues()
    {
        double inf = double.PositiveInfinity, nan = double.NaN;
        var x = new Nd([4, 2], [-inf, -inf, 1, -inf, inf, 1, 2, 2]);
        foreach (var dt in new[] { DType.Float32, DType.Float64 })
        {
            Nd.AssertClose(new Nd([4], [-inf, 1, inf, 2 + Math.Log(2)]), x.ToTensor(dt).LogSumExp([1]), Nd.Tol(dt), $"logsumexp with infinities {dt}");
            Nd.AssertClose(new Nd([4], [-inf, 1, inf, 2]), x.ToTensor(dt).Max([1]), 0, $"max with infinities {dt}");
            var withNan = new Nd([2, 4], [1, nan, 3, nan, 5, 4, 3, 2]).ToTensor(dt);
            Assert.Equal(new long[] { 1, 0 }, withNan.ArgMax(1).ToArray<long>());   // NaN is the maximum, as in PyTorch
            Assert.True(double.IsNaN(withNan.Max([1]).ToArray<double>()[0]), "max propagates NaN");
            Assert.True(double.IsNaN(withNan.Sum([1]).ToArray<double>()[0]), "sum propagates NaN");
        }
    }

    [Fact]
    public void ArgMaxTakesFirstOfTies()
    {
        var x = new Nd([2, 5], [1, 3, 3, 0, 3, 7, 7, 7, 7, 7]);
        Assert.Equal(new long[] { 1, 0 }, x.ToTensor(DType.Float32).ArgMax(1).ToArray<long>());
        var y = new Nd([3, 2], [5, 1, 5, 2, 1, 2]);
        Assert.Equal(new long[] { 0, 1 }, y.ToTensor(DType.Float64).ArgMax(0).ToArray<long>());
        Assert.Equal(new long[,] { { 0, 1 } }.Cast<long>(), y.ToTensor(DType.BFloat16).ArgMax(0, keepDim: true).ToArray<long>());
    }

    // ======================= matmul =======================

    /// <summary>Triple loop in double over NumPy matmul semantics (broadcast batch; 1-D operands promoted and squeezed).</summary>
    private static Nd MatMulRef(Nd a, Nd b)
    {
        bool aVec = a.Rank == 1, bVec = b.Rank == 1;
        if (aVec) a = a.Reshape(1, a.Shape[0]);
        if (bVec) b = b.Reshape(b.Shape[0], 1);
        int m = a.Shape[^2], k = a.Shape[^1], n = b.Shape[^1];
        var batch = Nd.BroadcastShape(a.Shape[..^2], b.Shape[..^2])!;
        var outShape = batch.Concat(new[] { m, n }).ToArray();
        var ia = new int[outShape.Length];
        var ib = new int[outShape.Length];
        var r = Nd.Of(outShape, idx =>
        {
            idx.CopyTo(ia, 0); idx.CopyTo(ib, 0);
            double s = 0;
            for (int p = 0; p < k; p++)
            {
                ia[^1] = p; ib[^2] = p;
                s += a.AtBroadcast(ia) * b.AtBroadcast(ib);
            }
            return s;
        });
        var final = outShape.ToList();
        if (bVec) final.RemoveAt(final.Count - 1);
        if (aVec) final.RemoveAt(final.Count - (bVec ? 1 : 2));
        return r.Reshape([.. final]);
    }

    private static readonly (string Name, Operand A, Operand B)[] MatMulLayouts =
    [
        ("1x1", Dense(1, 1), Dense(1, 1)),
        ("7x7", Dense(7, 7), Dense(7, 7)),
        ("33x33", Dense(33, 33), Dense(33, 33)),
        ("65x65", Dense(65, 65), Dense(65, 65)),
        ("129x129", Dense(129, 129), Dense(129, 129)),
        ("(7,33)@(33,65)", Dense(7, 33), Dense(33, 65)),
        ("(129,1)@(1,65)", Dense(129, 1), Dense(1, 65)),
        ("(1,129)@(129,7)", Dense(1, 129), Dense(129, 7)),
        ("(65,129)@(129,33)", Dense(65, 129), Dense(129, 33)),
        ("batched (2,3,7,5)@(5,9)", Dense(2, 3, 7, 5), Dense(5, 9)),
        ("broadcast batch (1,4,6)@(3,6,2)", Dense(1, 4, 6), Dense(3, 6, 2)),
        ("broadcast batch (3,1,4,6)@(2,6,5)", Dense(3, 1, 4, 6), Dense(2, 6, 5)),
        ("2-d @ batched (4,6)@(3,6,2)", Dense(4, 6), Dense(3, 6, 2)),
        ("a.T (7,33)@(33,65)", Transposed(7, 33), Dense(33, 65)),
        ("b.T (33,65)@(65,33)", Dense(33, 65), Transposed(65, 33)),
        ("a.T@b.T 65", Transposed(65, 65), Transposed(65, 65)),
        ("batched transposed (2,7,5)", Permuted([2, 5, 7], [0, 2, 1]), Dense(5, 9)),
        ("sliced a (7,66)[:, ::2]", SliceStep([7, 66], 1, 0, 66, 2), Dense(33, 7)),
        ("expanded batch b", Dense(3, 4, 6), Expanded([6, 2], [3, 6, 2])),
        ("vec @ mat", Dense(5), Dense(5, 9)),
        ("mat @ vec", Dense(7, 5), Dense(5)),
        ("vec @ vec", Dense(33), Dense(33)),
        ("batched @ vec", Dense(2, 3, 5), Dense(5)),
        ("a rows broadcast (stride 0) (1,33)->(7,33)", Expanded([1, 33], [7, 33]), Dense(33, 5)),
        ("b columns broadcast (stride 0) (33,1)->(33,9)", Dense(7, 33), Expanded([33, 1], [33, 9])),
        ("a strided rows (14,33)[::2]", SliceStep([14, 33], 0, 0, 14, 2), Dense(33, 9)),
        ("b strided rows and columns", Dense(5, 17), SliceStep([34, 9], 0, 1, 34, 2)),
        ("batched b.T with broadcast batch", Dense(2, 1, 3, 8), Permuted([4, 6, 8], [0, 2, 1])),
        ("multi-block (300,257)@(257,129)", Dense(300, 257), Dense(257, 129)),
        ("multi-block a.T (260,200)@(200,70)", Transposed(260, 200), Dense(200, 70)),
        ("K=0", Dense(3, 0), Dense(0, 4)),
        ("M=0", Dense(0, 5), Dense(5, 3)),
        ("batch=0", Dense(0, 2, 3), Dense(3, 4)),
    ];

    public static TheoryData<DType> FloatTypes() => new(Floats);

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void MatMul(DType dt)
    {
        int seed = 500;
        foreach (var (name, la, lb) in MatMulLayouts)
        {
            int s = ++seed;
            var (a, ta) = la(shape => Nd.Random(shape, s, -1, 1), dt);
            var (b, tb) = lb(shape => Nd.Random(shape, s + 77, -1, 1), dt);
            var y = ta.MatMul(tb);
            Assert.Equal(dt, y.DType);
            double tol = dt switch { DType.Float64 => 1e-12, DType.Float32 => 1e-4, DType.Float16 => 3e-3, _ => 1e-2 };
            Nd.AssertClose(MatMulRef(a, b), y, tol, $"matmul {dt} [{name}]");
        }
    }

    [Fact]
    public void MatMulKZeroIsZerosEvenWithRecycledBuffers()
    {
        // Fill the pool's size class with non-zero garbage first: a K=0 product must still be exactly 0.
        for (int i = 0; i < 4; i++) (Tensor.Full([3, 4], 7.5) * 2).Eval();
        var y = Tensor.Zeros([3, 0]).MatMul(Tensor.Zeros([0, 4]));
        Assert.Equal(new float[12], y.ToArray<float>());
    }

    // ======================= softmax / log_softmax =======================

    private static Nd SoftmaxRef(Nd x, int axis, bool log)
    {
        var lse = x.Reduce([axis], keepDim: true, Nd.LogSumExp);
        return Nd.Zip(x, lse, (v, l) => log ? v - l : Math.Exp(v - l));
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void SoftmaxAndLogSoftmax(DType dt)
    {
        var cases = new (int[] Shape, int Axis, bool Transposed)[]
        {
            ([3, 7, 5], -1, false), ([3, 7, 5], 1, false), ([3, 7, 5], 0, false),
            ([2, 257], -1, false), ([4, 1], -1, false), ([1], 0, false), ([6, 5], -1, true), ([6, 5], 0, true),
            ([40, 2000], -1, false),
        };
        int seed = 900;
        foreach (var (shape, axis, tr) in cases)
        {
            var x = Nd.Random(shape, ++seed, -5, 5).RoundTo(dt);
            var t = x.ToTensor(dt);
            if (tr) { x = x.T(); t = t.T; }
            int ax = axis < 0 ? axis + x.Rank : axis;
            string what = $"{Nd.Fmt(x.Shape)} axis {axis}{(tr ? " transposed" : "")} {dt}";
            Nd.AssertClose(SoftmaxRef(x, ax, false), t.Softmax(axis), Nd.Tol(dt), "softmax " + what);
            Nd.AssertClose(SoftmaxRef(x, ax, true), t.LogSoftmax(axis), Nd.Tol(dt) * (dt == DType.Float64 ? 10 : 1), "log_softmax " + what);
        }
    }

    [Fact]
    public void SoftmaxWithMaskedEntries()
    {
        double ninf = double.NegativeInfinity;
        var x = new Nd([2, 4], [1, ninf, 2, ninf, 0.5, 0.5, ninf, 3]);
        foreach (var dt in new[] { DType.Float32, DType.Float64 })
        {
            Nd.AssertClose(SoftmaxRef(x, 1, false), x.ToTensor(dt).Softmax(-1), Nd.Tol(dt), $"softmax with -inf {dt}");
            Nd.AssertClose(SoftmaxRef(x, 1, true), x.ToTensor(dt).LogSoftmax(-1), Nd.Tol(dt), $"log_softmax with -inf {dt}");
        }
    }

    // ======================= rms_norm / layer_norm =======================

    private static Nd RmsNormRef(Nd x, Nd w, double eps)
    {
        var ms = x.Reduce([-1], keepDim: true, v => v.Sum(a => a * a) / v.Count);
        return Nd.Zip(Nd.Zip(x, ms, (a, m) => a / Math.Sqrt(m + eps)), w, (a, g) => a * g);
    }

    private static Nd LayerNormRef(Nd x, Nd w, Nd b, double eps)
    {
        var mean = x.Reduce([-1], keepDim: true, v => Nd.Sum(v) / v.Count);
        var var = x.Reduce([-1], keepDim: true, v => Nd.Variance(v, 0));
        var xhat = Nd.Zip3(x, mean, var, (a, m, s) => (a - m) / Math.Sqrt(s + eps));
        return Nd.Zip3(xhat, w, b, (a, g, c) => a * g + c);
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Norms(DType dt)
    {
        var cases = new (int[] Shape, double Eps, bool Transposed)[]
        {
            ([4, 33], 1e-6, false), ([2, 3, 8], 1e-5, false), ([1, 1], 1e-6, false), ([5, 7], 0.1, true), ([300, 257], 1e-6, false),
        };
        int seed = 1200;
        foreach (var (shape, eps, tr) in cases)
        {
            var x = Nd.Random(shape, ++seed, -3, 3).RoundTo(dt);
            var t = x.ToTensor(dt);
            if (tr) { x = x.T(); t = t.T; }
            int d = x.Shape[^1];
            var w = Nd.Random([d], ++seed, 0.5, 1.5).RoundTo(dt);
            var b = Nd.Random([d], ++seed, -1, 1).RoundTo(dt);
            string what = $"{Nd.Fmt(x.Shape)} eps={eps}{(tr ? " transposed" : "")} {dt}";
            // Single-element rows make LayerNorm's output exactly the bias: keep them, they test eps handling.
            Nd.AssertClose(RmsNormRef(x, w, eps), Kiln.Ops.RmsNorm(t, w.ToTensor(dt), eps), Nd.Tol(dt) * (dt == DType.Float64 ? 10 : 1), "rms_norm " + what);
            Nd.AssertClose(LayerNormRef(x, w, b, eps), Kiln.Ops.LayerNorm(t, w.ToTensor(dt), b.ToTensor(dt), eps), Nd.Tol(dt) * (dt == DType.Float64 ? 100 : 1), "layer_norm " + what);
        }
    }

    // ======================= indexing =======================

    public static TheoryData<DType> IndexDTypes() => new(DType.Float32, DType.Float64, DType.BFloat16, DType.Float16, DType.Int32, DType.Int64);

    private static Nd ValuesFor(int[] shape, int seed, DType dt) =>
        (dt.IsInteger() ? Nd.RandomInts(shape, seed, -100, 100) : Nd.Random(shape, seed)).RoundTo(dt);

    [Theory]
    [MemberData(nameof(IndexDTypes))]
    public void EmbeddingAndIndexSelect(DType dt)
    {
        var table = ValuesFor([10, 6], 1, dt);
        var ids = new Nd([2, 3], [3, 0, 9, 3, 3, 7]);
        foreach (var idt in Ints)
        {
            var y = Kiln.Ops.Embedding(table.ToTensor(dt), ids.ToTensor(idt));
            var expected = Nd.Of([2, 3, 6], i => table.At((int)ids.At(i[0], i[1]), i[2]));
            Nd.AssertClose(expected, y, 0, $"embedding {dt} ids {idt}");
        }

        var x = ValuesFor([4, 5, 6], 2, dt);
        var index = new Nd([5], [2, 0, 2, 3, 1]);
        for (int axis = 0; axis < 3; axis++)
        {
            var idx = new Nd([5], index.Data.Select(v => v % x.Shape[axis]).ToArray());
            int ax = axis;
            var expected = Nd.Of([.. x.Shape.Select((d, k) => k == ax ? 5 : d)], i => { var j = (int[])i.Clone(); j[ax] = (int)idx.Data[i[ax]]; return x.At(j); });
            Nd.AssertClose(expected, x.ToTensor(dt).IndexSelect(axis, idx.ToTensor(DType.Int64)), 0, $"index_select {dt} axis {axis}");
            // Non-contiguous source, negative axis, int32 indices.
            var xt = x.Permute(2, 1, 0);
            var idxT = new Nd([5], index.Data.Select(v => v % xt.Shape[ax]).ToArray());
            var expectedT = Nd.Of([.. xt.Shape.Select((d, k) => k == ax ? 5 : d)], i => { var j = (int[])i.Clone(); j[ax] = (int)idxT.Data[i[ax]]; return xt.At(j); });
            Nd.AssertClose(expectedT, x.ToTensor(dt).Permute(2, 1, 0).IndexSelect(axis - 3, idxT.ToTensor(DType.Int32)), 0, $"index_select of permuted {dt} axis {axis - 3}");
        }
    }

    [Theory]
    [MemberData(nameof(IndexDTypes))]
    public void GatherAndScatterAdd(DType dt)
    {
        var x = ValuesFor([3, 4, 5], 3, dt);
        var r = new Random(4);
        foreach (var (axis, idxShape) in new[] { (0, new[] { 2, 4, 5 }), (1, new[] { 3, 6, 5 }), (2, new[] { 2, 3, 7 }), (1, new[] { 2, 2, 3 }) })
        {
            var idx = Nd.Of(idxShape, _ => r.Next(x.Shape[axis]));
            var expected = Nd.Of(idxShape, i => { var j = (int[])i.Clone(); j[axis] = (int)idx.At(i); return x.At(j); });
            Nd.AssertClose(expected, Kiln.Ops.Gather(x.ToTensor(dt), axis, idx.ToTensor(DType.Int64)), 0, $"gather {dt} axis {axis} index {Nd.Fmt(idxShape)}");
            Nd.AssertClose(expected, Kiln.Ops.Gather(x.ToTensor(dt), axis - 3, idx.ToTensor(DType.Int32)), 0, $"gather {dt} axis {axis - 3} i32 index");

            if (dt is DType.BFloat16 or DType.Float16) continue;   // scatter_add checked on exact types below
            // The same gather from a permuted (non-contiguous) view of x.
            var xp = x.Permute(2, 0, 1);
            int pa = new[] { 1, 2, 0 }[axis];      // where x's axis went
            var pShape = new[] { idxShape[2], idxShape[0], idxShape[1] };
            var pIdx = idx.Permute(2, 0, 1);
            var expectedP = Nd.Of(pShape, i => { var j = (int[])i.Clone(); j[pa] = (int)pIdx.At(i); return xp.At(j); });
            Nd.AssertClose(expectedP, Kiln.Ops.Gather(x.ToTensor(dt).Permute(2, 0, 1), pa, pIdx.ToTensor(DType.Int64)), 0, $"gather of permuted {dt} axis {pa}");

            var src = ValuesFor(idxShape, 5 + axis, dt);
            var outD = (double[])x.Data.Clone();
            for (int e = 0; e < idx.Numel; e++)
            {
                var i = Nd.Unflat(idxShape, e);
                var j = (int[])i.Clone(); j[axis] = (int)idx.Data[e];
                outD[Nd.Flat(x.Shape, j)] += src.Data[e];
            }
            Nd.AssertClose(new Nd(x.Shape, outD), Kiln.Ops.ScatterAdd(x.ToTensor(dt), axis, idx.ToTensor(DType.Int64), src.ToTensor(dt)),
                dt.IsInteger() ? 0 : Nd.Tol(dt), $"scatter_add {dt} axis {axis} index {Nd.Fmt(idxShape)}");
            // Non-contiguous base and source (stored permuted, viewed back).
            var baseView = x.Permute(1, 2, 0).ToTensor(dt).Permute(2, 0, 1);
            var srcView = src.Permute(2, 1, 0).ToTensor(dt).Permute(2, 1, 0);
            Nd.AssertClose(new Nd(x.Shape, outD), Kiln.Ops.ScatterAdd(baseView, axis, idx.ToTensor(DType.Int32), srcView),
                dt.IsInteger() ? 0 : Nd.Tol(dt), $"scatter_add of views {dt} axis {axis}");
        }
    }

    [Fact]
    public void IndexSelectAndIndexAddLargeEnoughToRunOnSeveralThreadsMatchLoopsExactly()
    {
        // An embedding lookup and its gradient at sizes above the threading threshold: rows split across threads
        // (select), column pieces (add: repeated ids sum in ascending order, so the bits equal a plain loop).
        int vocab = 300, dim = 2500, tokens = 700;
        var r = new Random(3);
        var table = new float[vocab * dim]; for (int i = 0; i < table.Length; i++) table[i] = (float)(r.NextDouble() - 0.5);
        var ids = new long[tokens]; for (int i = 0; i < tokens; i++) ids[i] = r.Next(40);   // many repeats
        var grad = new float[tokens * dim]; for (int i = 0; i < grad.Length; i++) grad[i] = (float)(r.NextDouble() - 0.5);
        var got = Tensor.FromArray(table, [vocab, dim]).IndexSelect(0, Tensor.FromArray(ids)).ToArray<float>();
        for (int t = 0; t < tokens; t++)
            for (int c = 0; c < dim; c++)
                if (got[t * dim + c] != table[ids[t] * dim + c]) Assert.Fail($"index_select [{t},{c}]");
        var sum = Kiln.Ops.IndexAdd(Tensor.FromArray(table, [vocab, dim]), 0, Tensor.FromArray(ids), Tensor.FromArray(grad, [tokens, dim])).ToArray<float>();
        var expected = (float[])table.Clone();
        for (int t = 0; t < tokens; t++)
            for (int c = 0; c < dim; c++) expected[ids[t] * dim + c] += grad[t * dim + c];
        Assert.Equal(expected, sum);
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    [InlineData(DType.Int32)]
    [InlineData(DType.Int64)]
    public void IndexAddWithDuplicates(DType dt)
    {
        var x = ValuesFor([4, 5], 6, dt);
        foreach (var (axis, ids) in new[] { (0, new[] { 1, 3, 1 }), (1, new[] { 0, 0, 4, 0 }) })
        {
            var srcShape = axis == 0 ? new[] { ids.Length, 5 } : [4, ids.Length];
            var src = ValuesFor(srcShape, 7 + axis, dt);
            var outD = (double[])x.Data.Clone();
            for (int e = 0; e < src.Numel; e++)
            {
                var i = Nd.Unflat(srcShape, e);
                var j = (int[])i.Clone(); j[axis] = ids[i[axis]];
                outD[Nd.Flat(x.Shape, j)] += src.Data[e];
            }
            var y = Kiln.Ops.IndexAdd(x.ToTensor(dt), axis, Tensor.FromArray(ids.Select(v => (long)v).ToArray()), src.ToTensor(dt));
            Nd.AssertClose(new Nd(x.Shape, outD), y, dt.IsInteger() ? 0 : Nd.Tol(dt), $"index_add {dt} axis {axis}");
            // Transposed base and source.
            var yt = Kiln.Ops.IndexAdd(x.T().ToTensor(dt).T, axis, Tensor.FromArray(ids), src.T().ToTensor(dt).T);
            Nd.AssertClose(new Nd(x.Shape, outD), yt, dt.IsInteger() ? 0 : Nd.Tol(dt), $"index_add of transposed views {dt} axis {axis}");
        }
    }

    // ======================= layout: concat / stack / split / pad / slice / triangle =======================

    public static TheoryData<DType> AllTypes() => new(Enum.GetValues<DType>());

    private static Nd ConcatRef(Nd[] xs, int axis)
    {
        var shape = (int[])xs[0].Shape.Clone();
        shape[axis] = xs.Sum(x => x.Shape[axis]);
        return Nd.Of(shape, i =>
        {
            int k = i[axis];
            foreach (var x in xs)
            {
                if (k < x.Shape[axis]) { var j = (int[])i.Clone(); j[axis] = k; return x.At(j); }
                k -= x.Shape[axis];
            }
            throw new InvalidOperationException();
        });
    }

    private static Nd ValuesAny(int[] shape, int seed, DType dt) => dt == DType.Bool ? Nd.RandomInts(shape, seed, 0, 1) : ValuesFor(shape, seed, dt);

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void ConcatStackSplit(DType dt)
    {
        var a = ValuesAny([2, 3, 4], 1, dt);
        var b = ValuesAny([2, 1, 4], 2, dt);
        var c = ValuesAny([2, 5, 4], 3, dt);
        Nd.AssertClose(ConcatRef([a, b, c], 1), Kiln.Ops.Concat([a.ToTensor(dt), b.ToTensor(dt), c.ToTensor(dt)], 1), 0, $"concat axis 1 {dt}");
        var p = ValuesAny([3, 3, 4], 4, dt);
        var e = new Nd([0, 3, 4], []);
        Nd.AssertClose(ConcatRef([a, p, e], 0), Kiln.Ops.Concat([a.ToTensor(dt), p.ToTensor(dt), e.ToTensor(dt)], 0), 0, $"concat axis 0 with empty {dt}");
        // Last axis, with a transposed and a sliced input.
        var q = ValuesAny([2, 6, 3], 5, dt);
        var s = ValuesAny([2, 3, 9], 6, dt);
        var ins = new[] { a, q.Permute(0, 2, 1), s.Slice(2, 1, 9, 4) };
        var tins = new[] { a.ToTensor(dt), q.ToTensor(dt).Permute(0, 2, 1), s.ToTensor(dt).Slice(2, 1, 9, 4) };
        Nd.AssertClose(ConcatRef(ins, 2), Kiln.Ops.Concat(tins, -1), 0, $"concat axis -1 of views {dt}");

        var m = new[] { ValuesAny([2, 3], 7, dt), ValuesAny([2, 3], 8, dt), ValuesAny([2, 3], 9, dt) };
        for (int axis = 0; axis <= 2; axis++)
        {
            int ax = axis;
            var expected = Nd.Of(ax switch { 0 => [3, 2, 3], 1 => [2, 3, 3], _ => [2, 3, 3] }, i =>
                ax switch { 0 => m[i[0]].At(i[1], i[2]), 1 => m[i[1]].At(i[0], i[2]), _ => m[i[2]].At(i[0], i[1]) });
            Nd.AssertClose(expected, Kiln.Ops.Stack(m.Select(t => t.ToTensor(dt)).ToArray(), axis), 0, $"stack axis {axis} {dt}");
        }

        var x = ValuesAny([2, 9], 10, dt);
        var parts = Kiln.Ops.Split(x.ToTensor(dt), [2, 0, 3, 4], 1);
        Assert.Equal(4, parts.Length);
        int at = 0;
        foreach (var (part, size) in parts.Zip(new[] { 2, 0, 3, 4 }))
        {
            Nd.AssertClose(x.Slice(1, at, at + size), part, 0, $"split part [{at}:{at + size}] {dt}");
            at += size;
        }
    }

    private static Nd PadRef(Nd x, int[] before, int[] after, double value)
    {
        var shape = x.Shape.Select((d, k) => d + before[k] + after[k]).ToArray();
        return Nd.Of(shape, i =>
        {
            var j = i.Select((v, k) => v - before[k]).ToArray();
            for (int k = 0; k < j.Length; k++) if (j[k] < 0 || j[k] >= x.Shape[k]) return value;
            return x.At(j);
        });
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    [InlineData(DType.BFloat16)]
    [InlineData(DType.Float16)]
    [InlineData(DType.Int32)]
    [InlineData(DType.Int64)]
    public void Pad(DType dt)
    {
        var x = ValuesFor([2, 3], 1, dt);
        Nd.AssertClose(PadRef(x, [1, 0], [2, 3], 1.5).RoundTo(dt), x.ToTensor(dt).Pad([1, 0], [2, 3], 1.5), 0, $"pad 2-d {dt}");
        var y = ValuesFor([2, 3, 4], 2, dt);
        Nd.AssertClose(PadRef(y, [0, 2, 1], [1, 0, 0], 0), y.ToTensor(dt).Pad([0, 2, 1], [1, 0, 0]), 0, $"pad 3-d {dt}");
        Nd.AssertClose(PadRef(y.Permute(2, 0, 1), [1, 1, 0], [0, 2, 2], -2), y.ToTensor(dt).Permute(2, 0, 1).Pad([1, 1, 0], [0, 2, 2], -2), 0, $"pad of permuted {dt}");
        Nd.AssertClose(PadRef(new Nd([0, 2], []), [1, 0], [1, 1], 3), new Nd([0, 2], []).ToTensor(dt).Pad([1, 0], [1, 1], 3), 0, $"pad of empty {dt}");
    }

    [Fact]
    public void SlicePythonSemantics()
    {
        var x = Nd.Random([5, 7], 3);
        var t = x.ToTensor(DType.Float64);
        Nd.AssertClose(x.Slice(1, 1, 7, 3), t.Slice(1, 1, 7, 3), 0, "[:, 1:7:3]");
        Nd.AssertClose(x.Slice(1, 3, 7, 1), t.Slice(1, -4), 0, "[:, -4:]");
        Nd.AssertClose(x.Slice(0, 1, 4, 1), t.Slice(0, 1, -1), 0, "[1:-1]");
        Nd.AssertClose(x.Slice(0, 2, 5, 2), t.Slice(0, 2, 100, 2), 0, "[2:100:2] (stop clamped)");
        Nd.AssertClose(x.Slice(0, 0, 5, 1), t.Slice(0, -100, 100), 0, "[-100:100] (both clamped)");
        Nd.AssertClose(x.Slice(1, 0, 0), t.Slice(1, 5, 2), 0, "[:, 5:2] (empty)");
        Nd.AssertClose(x.Slice(1, 6, 7, 5), t.Slice(1, 6, 7, 5), 0, "[:, 6:7:5]");
        // Slice of a slice of a transpose.
        Nd.AssertClose(x.T().Slice(0, 1, 7, 2).Slice(1, 1, 5, 3), t.T.Slice(0, 1, 7, 2).Slice(1, 1, 5, 3), 0, "slice of slice of transpose");
        // Values survive arithmetic on strided views.
        Nd.AssertClose(x.Slice(1, 0, 7, 2).Map(v => v * 2), t.Slice(1, 0, 7, 2) * 2, 1e-15, "slice then mul");
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void TriangleAndCausalMask(DType dt)
    {
        var x = Nd.Random([2, 4, 5], 8).RoundTo(dt);
        foreach (bool lower in new[] { true, false })
            foreach (int k in new[] { -1, 0, 2, -5, 7 })
            {
                var expected = Nd.Of(x.Shape, i => (lower ? i[2] <= i[1] + k : i[2] >= i[1] + k) ? x.At(i) : -3.5);
                Nd.AssertClose(expected, x.ToTensor(dt).Triangle(lower, k, -3.5), 0, $"triangle lower={lower} k={k} {dt}");
            }
        var causal = Nd.Of([2, 4, 4], i => i[2] <= i[1] ? x.At(i) : double.NegativeInfinity);
        Nd.AssertClose(causal, Kiln.Ops.CausalMask(x.ToTensor(dt).Slice(2, 0, 4)), 0, $"causal mask {dt}");
        var xt = x.Permute(0, 2, 1);
        Nd.AssertClose(Nd.Of(xt.Shape, i => i[2] <= i[1] ? xt.At(i) : 0), x.ToTensor(dt).Permute(0, 2, 1).Triangle(true), 0, $"triangle of transposed {dt}");
    }

    // ======================= rope =======================

    private static Nd RopeRef(Nd x, double theta, bool interleaved, int offset)
    {
        int d = x.Shape[^1], seq = x.Shape[^2];
        return Nd.Of(x.Shape, idx =>
        {
            int pos = idx[^2] + offset, c = idx[^1];
            // pair (2i, 2i+1) when interleaved, (i, i + D/2) when half-split
            int i = interleaved ? c / 2 : c % (d / 2);
            bool first = interleaved ? c % 2 == 0 : c < d / 2;
            int partner = interleaved ? (first ? c + 1 : c - 1) : (first ? c + d / 2 : c - d / 2);
            double ang = pos * Math.Pow(theta, -2.0 * i / d);
            var j = (int[])idx.Clone(); j[^1] = partner;
            double self = x.At(idx), other = x.At(j);
            return first ? self * Math.Cos(ang) - other * Math.Sin(ang) : other * Math.Sin(ang) + self * Math.Cos(ang);
        });
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Rope(DType dt)
    {
        var x = Nd.Random([2, 3, 5, 8], 13).RoundTo(dt);
        foreach (bool interleaved in new[] { true, false })
            foreach (var (theta, offset) in new[] { (10000.0, 0), (500.0, 3), (10000.0, 1000) })
                Nd.AssertClose(RopeRef(x, theta, interleaved, offset), x.ToTensor(dt).Rope(theta, interleaved, offset),
                    dt == DType.Float64 ? 1e-12 : Nd.Tol(dt), $"rope interleaved={interleaved} theta={theta} offset={offset} {dt}");
        // Non-contiguous input: (batch, seq, heads, dim) transposed to (batch, heads, seq, dim), as attention does.
        var y = Nd.Random([2, 6, 3, 4], 14).RoundTo(dt);
        Nd.AssertClose(RopeRef(y.Permute(0, 2, 1, 3), 10000, false, 2), y.ToTensor(dt).Permute(0, 2, 1, 3).Rope(10000, false, 2),
            dt == DType.Float64 ? 1e-12 : Nd.Tol(dt), $"rope of permuted {dt}");
        // 2-D input (seq, dim).
        var z = Nd.Random([9, 6], 15).RoundTo(dt);
        Nd.AssertClose(RopeRef(z, 10000, true, 0), z.ToTensor(dt).Rope(interleaved: true), dt == DType.Float64 ? 1e-12 : Nd.Tol(dt), $"rope 2-d {dt}");
    }

    // ======================= cross-entropy =======================

    private static double CrossEntropyRef(Nd logits, long[] targets, int ignore, double eps)
    {
        int n = logits.Shape[0], c = logits.Shape[1];
        double total = 0; int count = 0;
        for (int r = 0; r < n; r++)
        {
            if (targets[r] == ignore) continue;
            var row = Enumerable.Range(0, c).Select(j => logits.At(r, j)).ToList();
            double lse = Nd.LogSumExp(row);
            double nll = lse - row[(int)targets[r]];
            double smooth = row.Sum(v => lse - v) / c;    // −mean_j log p_j
            total += (1 - eps) * nll + eps * smooth;
            count++;
        }
        return total / count;
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void CrossEntropy(DType dt)
    {
        var logits = Nd.Random([5, 7], 21, -4, 4).RoundTo(dt);
        var targets = new long[] { 3, -100, 0, 6, 2 };
        foreach (var idt in Ints)
            foreach (var (ignore, eps) in new[] { (-100, 0.0), (-100, 0.1), (2, 0.0), (2, 0.25), (-1, 1.0) })
            {
                double expected = CrossEntropyRef(logits, targets.Select(t => t == -100 ? (long)ignore : t).ToArray(), ignore, eps);
                var tt = new Nd([5], targets.Select(t => t == -100 ? (double)ignore : t).ToArray()).ToTensor(idt);
                var y = Kiln.Ops.CrossEntropy(logits.ToTensor(dt), tt, ignore, eps);
                Assert.Empty(y.Shape);
                Nd.AssertClose(new Nd([], [expected]), y, Nd.Tol(dt), $"cross_entropy ignore={ignore} smoothing={eps} {dt} targets {idt}");
            }
        // Transposed logits.
        var lt = Nd.Random([7, 5], 22).RoundTo(dt);
        var tg = new long[] { 0, 6, 6, 1, 4 };
        Nd.AssertClose(new Nd([], [CrossEntropyRef(lt.T(), tg, -100, 0.1)]),
            Kiln.Ops.CrossEntropy(lt.ToTensor(dt).T, Tensor.FromArray(tg), labelSmoothing: 0.1), Nd.Tol(dt), $"cross_entropy of transposed logits {dt}");
    }

    // ======================= cast =======================

    [Fact]
    public void CastFloatToIntTruncatesTowardZero()
    {
        var vals = new[] { -2.7, -2.5, -1.0, -0.5, -0.0, 0.0, 0.4, 0.999, 1.0, 2.5, 2.99, 1234.9, -1234.9 };
        foreach (var from in Floats)
        {
            var x = new Nd([vals.Length], vals).RoundTo(from);
            foreach (var to in Ints)
            {
                var y = x.ToTensor(from).Cast(to);
                Assert.Equal(to, y.DType);
                Assert.Equal(x.Data.Select(Math.Truncate).ToArray(), y.ToArray<double>());
            }
        }
        Assert.Equal(new long[] { -2, -2, -1, 0, 0, 0, 0, 0, 1, 2, 2, 1234, -1234 }, Tensor.FromArray(vals.Select(v => (float)v).ToArray()).Cast(DType.Int64).ToArray<long>());
        Assert.Equal(new long[] { 123456, -123456, 1000000000, 1000000000000000 },
            Tensor.FromArray(new[] { 123456.9, -123456.9, 1e9 + 0.5, 1e15 + 0.5 }).Cast(DType.Int64).ToArray<long>());
        Assert.Equal(new[] { 16777216, -16777216 }, Tensor.FromArray(new[] { 16777216.0f, -16777216.0f }).Cast(DType.Int32).ToArray<int>());
    }

    /// <summary>fp32 bit patterns that stress round-to-nearest-even: exact ties both ways, just above/below ties, carries, specials.</summary>
    private static IEnumerable<float> Bf16RoundingProbes()
    {
        uint[] patterns =
        [
            0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x3F80FFFF, 0x3FFF8000, 0x3FFFFFFF,
            0xBF808000, 0xBF818000, 0xBF80C000, 0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0xFF7FFFFF, 0x00000001,
            0x00008000, 0x00018000, 0x807FFFFF, 0x00800000, 0x7F800000, 0xFF800000, 0x00000000, 0x80000000,
        ];
        foreach (var p in patterns) yield return BitConverter.UInt32BitsToSingle(p);
        var r = new Random(99);
        for (int i = 0; i < 4000; i++)
        {
            uint u = (uint)r.Next() ^ ((uint)r.Next(2) << 31);
            if (i % 4 == 0) u = (u & 0xFFFF0000) | 0x8000;   // exact tie
            if ((u & 0x7F800000) == 0x7F800000) continue;     // NaN/inf handled separately
            yield return BitConverter.UInt32BitsToSingle(u);
        }
    }

    [Fact]
    public void CastF32ToBf16RoundsToNearestEvenBitExact()
    {
        var xs = Bf16RoundingProbes().ToArray();
        var got = Tensor.FromArray(xs).Cast(DType.BFloat16).ToArray<BFloat16>();
        for (int i = 0; i < xs.Length; i++)
        {
            ushort want = Bf16.FromFloat(xs[i]);
            Assert.True(want == got[i].Bits, $"f32→bf16 of 0x{BitConverter.SingleToUInt32Bits(xs[i]):X8} ({xs[i]:R}): got 0x{got[i].Bits:X4}, expected 0x{want:X4}");
        }
        // Multi-threaded size and a strided source take the same path.
        var big = Enumerable.Range(0, 70000).Select(i => xs[i % xs.Length]).ToArray();
        var gotBig = Tensor.FromArray(big).Cast(DType.BFloat16).ToArray<BFloat16>();
        for (int i = 0; i < big.Length; i++) Assert.Equal(Bf16.FromFloat(big[i]), gotBig[i].Bits);
        // NaN stays NaN.
        var nan = Tensor.FromArray(new[] { float.NaN, -float.NaN }).Cast(DType.BFloat16).ToArray<BFloat16>();
        Assert.All(nan, b => Assert.True(float.IsNaN(b.ToSingle())));
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void CastBetweenEveryPairOfDTypes(DType from)
    {
        // Values every dtype holds exactly (ints, halves), then fractions that truncate or round.
        var exact = new Nd([2, 4], [0, 1, -2, 3, 100, -7, 64, 5]);
        var frac = new Nd([6], [0.5, -0.5, 1.75, -2.25, 3.125, 0.0078125]);
        foreach (var to in Enum.GetValues<DType>())
        {
            var x = (from == DType.Bool ? exact.Map(v => v != 0 ? 1 : 0) : exact).RoundTo(from);
            var y = x.ToTensor(from).T.Cast(to);
            Assert.Equal(to, y.DType);
            Nd.AssertClose(x.T().RoundTo(to), y, 0, $"cast {from} -> {to}");
            if (!from.IsFloat()) continue;
            var f = frac.RoundTo(from);
            Nd.AssertClose(f.RoundTo(to), f.ToTensor(from).Cast(to), 0, $"cast {from} -> {to} of fractions");
        }
    }

    [Fact]
    public void CastF32ToF16AndBackAndOtherPairs()
    {
        var xs = Bf16RoundingProbes().Take(2000).Concat([65504f, 65520f, 65519.99f, 6e-8f, 3e-8f, 2.98e-8f]).ToArray();
        var got = Tensor.FromArray(xs).Cast(DType.Float16).ToArray<Half>();
        for (int i = 0; i < xs.Length; i++)
        {
            Half want = (Half)(double)xs[i];     // the BCL's double→Half is correctly rounded; float→double is exact
            Assert.True(want.Equals(got[i]) || (Half.IsNaN(want) && Half.IsNaN(got[i])),
                $"f32→f16 of {xs[i]:R}: got {got[i]}, expected {want}");
        }
        // Widening is exact.
        var bf = xs.Select(x => BFloat16.FromBits(Bf16.FromFloat(x))).ToArray();
        var back = Tensor.FromArray(bf).Cast(DType.Float32).ToArray<float>();
        for (int i = 0; i < bf.Length; i++) Assert.Equal(BitConverter.UInt32BitsToSingle((uint)bf[i].Bits << 16), back[i]);
        // Integer ↔ float and bool.
        Assert.Equal(new[] { 0f, -3f, 16777216f }, Tensor.FromArray(new long[] { 0, -3, 16777216 }).Cast(DType.Float32).ToArray<float>());
        Assert.Equal(new[] { false, true, true, true }, Tensor.FromArray(new[] { 0f, -0.1f, float.NaN, 2f }).Cast(DType.Bool).ToArray<bool>());
        Assert.Equal(new[] { 1.0, 0.0 }, Tensor.FromArray(new[] { true, false }).Cast(DType.Float64).ToArray<double>());
        Assert.Equal(new long[] { -5, int.MaxValue }, Tensor.FromArray(new[] { -5, int.MaxValue }).Cast(DType.Int64).ToArray<long>());
        // f32 → i64 on a transposed view.
        var m = new Nd([2, 3], [-1.5, 2.5, 3.9, -0.1, 7, -8.8]);
        Assert.Equal(new long[] { -1, 0, 2, 7, 3, -8 }, m.ToTensor(DType.Float32).T.Cast(DType.Int64).ToArray<long>());
    }
}
