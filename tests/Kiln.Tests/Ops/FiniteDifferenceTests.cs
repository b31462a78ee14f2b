// Every differentiable op's gradient (Autograd.ValueAndGrad / Autograd.Grad) against central finite differences
// in float64: loss = sum(op(inputs) · U) for a fixed random upstream U, and for every element of every float
// input, (loss(x + h·eᵢ) − loss(x − h·eᵢ)) / 2h. Inputs stay small (≤ 40 elements) so every element is probed.
namespace Kiln.Tests.Ops;

public class FiniteDifferenceTests
{
    private const double H = 1e-6;
    private const double Tol = 1e-6;
    private const DType F64 = DType.Float64;

    private static Tensor Ids(params long[] ids) => Tensor.FromArray(ids);

    /// <summary>Checks d(sum(f(xs)·U))/dxs from autograd against central differences, element by element.</summary>
    private static void Check(string what, Func<Tensor[], Tensor> f, params Nd[] inputs)
    {
        Assert.All(inputs, x => Assert.True(x.Numel <= 40, $"{what}: keep inputs ≤ 40 elements"));
        var xs = inputs.Select(x => x.ToTensor(F64)).ToArray();
        var probe = f(xs);
        var u = Nd.Random([.. probe.Shape], 4242 + probe.Shape.Sum(), -1, 1).ToTensor(F64);
        Tensor Loss(Tensor[] p) => (f(p) * u).Sum();

        var (value, grads) = Autograd.ValueAndGrad(Loss, xs);
        Tensor.Eval([value, .. grads]);

        double LossAt(Nd[] vals) => Loss(vals.Select(v => v.ToTensor(F64)).ToArray()).Item<double>();
        Assert.Equal(LossAt(inputs), value.Item<double>(), 12);

        for (int i = 0; i < inputs.Length; i++)
        {
            Assert.True(inputs[i].Shape.SequenceEqual(grads[i].Shape), $"{what}: gradient of input {i} has shape {Nd.Fmt([.. grads[i].Shape])}, expected {Nd.Fmt(inputs[i].Shape)}");
            Assert.Equal(F64, grads[i].DType);
            var fd = new double[inputs[i].Numel];
            for (int e = 0; e < fd.Length; e++)
            {
                var plus = inputs.Select(x => new Nd(x.Shape, (double[])x.Data.Clone())).ToArray();
                var minus = inputs.Select(x => new Nd(x.Shape, (double[])x.Data.Clone())).ToArray();
                plus[i].Data[e] += H;
                minus[i].Data[e] -= H;
                fd[e] = (LossAt(plus) - LossAt(minus)) / (2 * H);
            }
            Close.AssertAll(fd, grads[i].ToArray<double>(), Tol, $"{what}: d loss / d input {i}");
        }
    }

    private static int Seed(string s) => s.Aggregate(17, (h, c) => h * 31 + c);
    private static Nd R(string name, int k, params int[] shape) => Nd.Random(shape, Seed(name) + k, -2, 2);
    private static Nd Pos(string name, int k, params int[] shape) => Nd.Random(shape, Seed(name) + k, 0.3, 3);
    /// <summary>Random values at least 0.1 away from 0 (kinks of abs/relu, poles of division).</summary>
    private static Nd AwayFromZero(string name, int k, params int[] shape) => R(name, k, shape).Map(v => v + Math.CopySign(0.1, v));

    // ======================= the cases =======================

    private static readonly Dictionary<string, Action<string>> Cases = new()
    {
        // ---- unary ----
        ["neg"] = n => Check(n, x => -x[0], R(n, 0, 3, 4)),
        ["abs"] = n => Check(n, x => x[0].Abs(), AwayFromZero(n, 0, 3, 4)),
        ["exp"] = n => Check(n, x => x[0].Exp(), R(n, 0, 3, 4)),
        ["log"] = n => Check(n, x => x[0].Log(), Pos(n, 0, 3, 4)),
        ["sqrt"] = n => Check(n, x => x[0].Sqrt(), Pos(n, 0, 3, 4)),
        ["rsqrt"] = n => Check(n, x => x[0].Rsqrt(), Pos(n, 0, 3, 4)),
        ["sin"] = n => Check(n, x => x[0].Sin(), R(n, 0, 3, 4)),
        ["cos"] = n => Check(n, x => x[0].Cos(), R(n, 0, 3, 4)),
        ["tanh"] = n => Check(n, x => x[0].Tanh(), R(n, 0, 3, 4)),
        ["sigmoid"] = n => Check(n, x => x[0].Sigmoid(), R(n, 0, 3, 4)),
        ["relu"] = n => Check(n, x => x[0].Relu(), AwayFromZero(n, 0, 3, 4)),
        ["gelu_erf"] = n => Check(n, x => x[0].Gelu(), R(n, 0, 3, 4)),
        ["gelu_tanh"] = n => Check(n, x => x[0].Gelu(GeluApproximation.Tanh), R(n, 0, 3, 4)),
        // the derivative op's own gradient (second order through gelu_tanh_grad's rule)
        ["gelu_tanh second order"] = n => Check(n, x => Autograd.Grad((x[0].Gelu(GeluApproximation.Tanh) * x[1]).Sum(), x[0])[0], R(n, 0, 3, 4), R(n, 1, 3, 4)),
        ["silu"] = n => Check(n, x => x[0].Silu(), R(n, 0, 3, 4)),
        ["square"] = n => Check(n, x => x[0].Square(), R(n, 0, 3, 4)),
        ["erf"] = n => Check(n, x => x[0].Erf(), R(n, 0, 3, 4)),

        // ---- binary with broadcasting (gradients summed back to each input's shape) ----
        ["add (3,1,4)+(2,1)"] = n => Check(n, x => x[0] + x[1], R(n, 0, 3, 1, 4), R(n, 1, 2, 1)),
        ["sub (4,)-(3,4)"] = n => Check(n, x => x[0] - x[1], R(n, 0, 4), R(n, 1, 3, 4)),
        ["mul scalar*(2,3)"] = n => Check(n, x => x[0] * x[1], R(n, 0), R(n, 1, 2, 3)),
        ["mul (3,1,4)*(2,1)"] = n => Check(n, x => x[0] * x[1], R(n, 0, 3, 1, 4), R(n, 1, 2, 1)),
        ["div (2,3,1)/(4,)"] = n => Check(n, x => x[0] / x[1], R(n, 0, 2, 3, 1), AwayFromZero(n, 1, 4)),
        ["div by (1,)"] = n => Check(n, x => x[0] / x[1], R(n, 0, 3, 4), AwayFromZero(n, 1, 1)),
        ["pow (3,1,4)^(2,1)"] = n => Check(n, x => Kiln.Ops.Pow(x[0], x[1]), Pos(n, 0, 3, 1, 4), R(n, 1, 2, 1)),
        ["pow by constant"] = n => Check(n, x => Kiln.Ops.Pow(x[0], 2.5), Pos(n, 0, 3, 4)),
        ["maximum (3,4) (4,)"] = n => Check(n, x => Kiln.Ops.Maximum(x[0], x[1]), NoTies(n, [3, 4], [4]).A, NoTies(n, [3, 4], [4]).B),
        ["minimum (2,1,3) (4,1)"] = n => Check(n, x => Kiln.Ops.Minimum(x[0], x[1]), NoTies(n, [2, 1, 3], [4, 1]).A, NoTies(n, [2, 1, 3], [4, 1]).B),
        ["where broadcast"] = n => Check(n, x => Kiln.Ops.Where(Tensor.FromArray(new[] { true, false, true }, [3, 1]), x[0], x[1]), R(n, 0, 3, 4), R(n, 1, 4)),
        ["where with scalar"] = n => Check(n, x => Kiln.Ops.Where(x[0] > 0.3, x[0].Square(), 1.5), AwayFromZero(n, 0, 2, 5).Map(v => Math.Abs(v - 0.3) < 0.05 ? v + 0.1 : v)),
        ["same input twice"] = n => Check(n, x => x[0] * x[0] + x[0].Exp() - x[0] / 3.0, R(n, 0, 3, 4)),

        // ---- reductions ----
        ["sum axis 1"] = n => Check(n, x => x[0].Sum([1]), R(n, 0, 2, 3, 4)),
        ["sum axes 0,2 keepDim"] = n => Check(n, x => x[0].Sum([0, 2], keepDim: true), R(n, 0, 2, 3, 4)),
        ["sum all"] = n => Check(n, x => x[0].Sum(), R(n, 0, 2, 3, 4)),
        ["mean axis -1 keepDim"] = n => Check(n, x => x[0].Mean([-1], keepDim: true), R(n, 0, 2, 3, 4)),
        ["mean axes 0,1"] = n => Check(n, x => x[0].Mean([0, 1]), R(n, 0, 2, 3, 4)),
        ["max axis 1"] = n => Check(n, x => x[0].Max([1]), R(n, 0, 2, 3, 4)),
        ["max axes 0,2 keepDim"] = n => Check(n, x => x[0].Max([0, 2], keepDim: true), R(n, 0, 2, 3, 4)),
        ["min axis 0 keepDim"] = n => Check(n, x => x[0].Min([0], keepDim: true), R(n, 0, 2, 3, 4)),
        ["min all"] = n => Check(n, x => x[0].Min(), R(n, 0, 2, 3, 4)),
        ["logsumexp axis 2"] = n => Check(n, x => x[0].LogSumExp([2]), R(n, 0, 2, 3, 4)),
        ["logsumexp axes 0,1 keepDim"] = n => Check(n, x => x[0].LogSumExp([0, 1], keepDim: true), R(n, 0, 2, 3, 4)),
        ["var axis 1"] = n => Check(n, x => x[0].Var([1]), R(n, 0, 2, 3, 4)),
        ["var axes 0,2 keepDim correction 0"] = n => Check(n, x => x[0].Var([0, 2], keepDim: true, correction: 0), R(n, 0, 2, 3, 4)),
        ["var all"] = n => Check(n, x => x[0].Var(), R(n, 0, 2, 3, 4)),

        // ---- matmul ----
        ["matmul (3,4)@(4,5)"] = n => Check(n, x => x[0].MatMul(x[1]), R(n, 0, 3, 4), R(n, 1, 4, 5)),
        ["matmul broadcast batch (1,3,4)@(2,4,2)"] = n => Check(n, x => x[0].MatMul(x[1]), R(n, 0, 1, 3, 4), R(n, 1, 2, 4, 2)),
        ["matmul 2-d @ batched (3,4)@(2,4,3)"] = n => Check(n, x => x[0].MatMul(x[1]), R(n, 0, 3, 4), R(n, 1, 2, 4, 3)),
        ["matmul batched @ 2-d (2,2,3)@(3,4)"] = n => Check(n, x => x[0].MatMul(x[1]), R(n, 0, 2, 2, 3), R(n, 1, 3, 4)),
        ["matmul a.T @ b.T"] = n => Check(n, x => x[0].T.MatMul(x[1].T), R(n, 0, 4, 3), R(n, 1, 5, 4)),
        ["matmul vec @ mat"] = n => Check(n, x => x[0].MatMul(x[1]), R(n, 0, 4), R(n, 1, 4, 3)),
        ["matmul mat @ vec"] = n => Check(n, x => x[0].MatMul(x[1]), R(n, 0, 3, 4), R(n, 1, 4)),
        ["matmul vec @ vec"] = n => Check(n, x => x[0].MatMul(x[1]), R(n, 0, 6), R(n, 1, 6)),

        // ---- softmax and normalizations ----
        ["softmax axis -1"] = n => Check(n, x => x[0].Softmax(-1), R(n, 0, 3, 5)),
        ["softmax axis 0"] = n => Check(n, x => x[0].Softmax(0), R(n, 0, 3, 5)),
        ["softmax middle axis"] = n => Check(n, x => x[0].Softmax(1), R(n, 0, 2, 3, 4)),
        ["log_softmax axis -1"] = n => Check(n, x => x[0].LogSoftmax(-1), R(n, 0, 2, 3, 4)),
        ["log_softmax axis 1"] = n => Check(n, x => x[0].LogSoftmax(1), R(n, 0, 2, 3, 4)),
        ["rms_norm"] = n => Check(n, x => Kiln.Ops.RmsNorm(x[0], x[1], 1e-5), R(n, 0, 3, 5), R(n, 1, 5)),
        ["rms_norm 3-d"] = n => Check(n, x => Kiln.Ops.RmsNorm(x[0], x[1], 0.01), R(n, 0, 2, 2, 6), R(n, 1, 6)),
        ["layer_norm"] = n => Check(n, x => Kiln.Ops.LayerNorm(x[0], x[1], x[2], 1e-5), R(n, 0, 3, 5), R(n, 1, 5), R(n, 2, 5)),
        ["layer_norm 3-d"] = n => Check(n, x => Kiln.Ops.LayerNorm(x[0], x[1], x[2], 0.01), R(n, 0, 2, 2, 6), R(n, 1, 6), R(n, 2, 6)),

        // ---- language-model ops ----
        ["rope half-split"] = n => Check(n, x => x[0].Rope(100, interleaved: false, offset: 2), R(n, 0, 2, 3, 4)),
        ["rope interleaved"] = n => Check(n, x => x[0].Rope(100, interleaved: true, offset: 0), R(n, 0, 2, 3, 4)),
        ["rope of transposed"] = n => Check(n, x => x[0].Transpose(0, 1).Rope(10000, interleaved: false, offset: 1), R(n, 0, 3, 2, 6)),
        ["cross_entropy ignore + smoothing"] = n => Check(n, x => Kiln.Ops.CrossEntropy(x[0], Ids(1, -100, 4, 0), -100, 0.1), R(n, 0, 4, 5)),
        ["cross_entropy plain"] = n => Check(n, x => Kiln.Ops.CrossEntropy(x[0], Ids(2, 2, 0)), R(n, 0, 3, 6)),
        ["cross_entropy custom ignore"] = n => Check(n, x => Kiln.Ops.CrossEntropy(x[0], Tensor.FromArray(new[] { 3, 1, 3, 0 }), ignoreIndex: 3, labelSmoothing: 0.3), R(n, 0, 4, 4)),

        // ---- indexing (float inputs only) ----
        ["gather axis 1"] = n => Check(n, x => Kiln.Ops.Gather(x[0], 1, Tensor.FromArray(new long[] { 0, 0, 3, 1, 2, 1 }, [3, 2])), R(n, 0, 3, 4)),
        ["gather axis 0"] = n => Check(n, x => Kiln.Ops.Gather(x[0], 0, Tensor.FromArray(new long[] { 2, 0, 2, 1, 2, 2, 0, 1 }, [2, 4])), R(n, 0, 3, 4)),
        ["index_select axis 0"] = n => Check(n, x => x[0].IndexSelect(0, Ids(2, 0, 2)), R(n, 0, 4, 3)),
        ["index_select axis 1"] = n => Check(n, x => x[0].IndexSelect(1, Ids(1, 1, 0, 2)), R(n, 0, 2, 3, 2)),
        ["embedding"] = n => Check(n, x => Kiln.Ops.Embedding(x[0], Tensor.FromArray(new long[] { 4, 0, 4, 2 }, [2, 2])), R(n, 0, 5, 3)),
        ["scatter_add axis 0"] = n => Check(n, x => Kiln.Ops.ScatterAdd(x[0], 0, Tensor.FromArray(new long[] { 2, 0, 2, 1, 0, 0, 1, 2 }, [2, 4]), x[1]), R(n, 0, 3, 4), R(n, 1, 2, 4)),
        ["scatter_add axis 1"] = n => Check(n, x => Kiln.Ops.ScatterAdd(x[0], 1, Tensor.FromArray(new long[] { 3, 3, 0, 1, 2, 3 }, [3, 2]), x[1]), R(n, 0, 3, 4), R(n, 1, 3, 2)),
        ["index_add axis 0"] = n => Check(n, x => Kiln.Ops.IndexAdd(x[0], 0, Ids(1, 3, 1), x[1]), R(n, 0, 4, 3), R(n, 1, 3, 3)),
        ["index_add axis 1"] = n => Check(n, x => Kiln.Ops.IndexAdd(x[0], 1, Ids(0, 0), x[1]), R(n, 0, 3, 4), R(n, 1, 3, 2)),

        // ---- layout ----
        ["concat axis 1"] = n => Check(n, x => Kiln.Ops.Concat([x[0], x[1], x[2]], 1), R(n, 0, 2, 3), R(n, 1, 2, 1), R(n, 2, 2, 2)),
        ["concat axis 0"] = n => Check(n, x => Kiln.Ops.Concat([x[0], x[1]], 0), R(n, 0, 1, 3), R(n, 1, 2, 3)),
        ["stack axis 1"] = n => Check(n, x => Kiln.Ops.Stack([x[0], x[1]], 1), R(n, 0, 2, 3), R(n, 1, 2, 3)),
        ["split"] = n => Check(n, x => Kiln.Ops.Split(x[0], [1, 3, 2], 1)[1] * Kiln.Ops.Split(x[0], [1, 3, 2], 1)[1], R(n, 0, 2, 6)),
        ["pad"] = n => Check(n, x => x[0].Pad([1, 0], [0, 2], 0.5), R(n, 0, 2, 3)),
        ["slice step 2"] = n => Check(n, x => x[0].Slice(1, 1, 7, 2), R(n, 0, 3, 7)),
        ["slice step 3 axis 0"] = n => Check(n, x => x[0].Slice(0, 0, 8, 3), R(n, 0, 8, 2)),
        ["expand"] = n => Check(n, x => x[0].Expand(2, 3, 4), R(n, 0, 3, 1)),
        ["permute"] = n => Check(n, x => x[0].Permute(2, 0, 1), R(n, 0, 2, 3, 4)),
        ["reshape"] = n => Check(n, x => x[0].Reshape(4, 6), R(n, 0, 2, 3, 4)),
        ["reshape of transposed (copy)"] = n => Check(n, x => x[0].Permute(1, 0, 2).Reshape(3, 8), R(n, 0, 2, 3, 4)),
        ["unsqueeze squeeze"] = n => Check(n, x => x[0].Unsqueeze(1).Exp().Squeeze(1), R(n, 0, 3, 4)),
        ["triangle lower"] = n => Check(n, x => x[0].Triangle(true), R(n, 0, 2, 4, 4)),
        ["triangle upper diag 1"] = n => Check(n, x => x[0].Triangle(false, 1, 2.0), R(n, 0, 3, 5)),
        ["causal mask + softmax"] = n => Check(n, x => Kiln.Ops.CausalMask(x[0]).Softmax(-1), R(n, 0, 2, 4, 4)),

        // ---- composed ----
        ["2-layer MLP with silu, rms_norm, cross_entropy"] = n => Check(n, p =>
            {
                Tensor x = p[0], w1 = p[1], b1 = p[2], g = p[3], w2 = p[4];
                var h = (x.MatMul(w1) + b1).Silu();
                var logits = Kiln.Ops.RmsNorm(h, g, 1e-6).MatMul(w2);
                return Kiln.Ops.CrossEntropy(logits, Ids(0, 2, 1, -100), labelSmoothing: 0.05);
            },
            R(n, 0, 4, 3), R(n, 1, 3, 5), R(n, 2, 5), R(n, 3, 5), R(n, 4, 5, 3)),
        ["attention block"] = n => Check(n, p =>
            {
                Tensor q = p[0].Rope(), k = p[1].Rope();
                var scores = q.MatMul(k.T) * (1 / Math.Sqrt(4));
                return Kiln.Ops.CausalMask(scores).Softmax(-1).MatMul(p[2]);
            },
            R(n, 0, 1, 3, 4), R(n, 1, 1, 3, 4), R(n, 2, 1, 3, 4)),
    };

    /// <summary>Two arrays whose broadcast pairs are all at least 0.05 apart (maximum/minimum have no gradient at ties).</summary>
    private static (Nd A, Nd B) NoTies(string name, int[] sa, int[] sb)
    {
        for (int k = 0; ; k++)
        {
            var a = R(name, 10 * k, sa); var b = R(name, 10 * k + 1, sb);
            if (Nd.Zip(a, b, (p, q) => Math.Abs(p - q)).Data.Min() > 0.05) return (a, b);
        }
    }

    public static TheoryData<string> CaseNames() => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void GradientMatchesFiniteDifferences(string name) => Cases[name](name);

    // ======================= gradient API behaviour =======================

    [Fact]
    public void DetachStopsGradients()
    {
        var xd = new Nd([3], [0.5, -1.5, 2.0]);
        var x = xd.ToTensor(F64);
        // d/dx sum(stop(x) · x) = stop(x), not 2x.
        var g = Autograd.Grad((x.Detach() * x).Sum(), [x])[0];
        Close.AssertAll(xd.Data, g.ToArray<double>(), 0, "grad through Detach");
        // A loss that only sees the detached value has zero gradient.
        var g2 = Autograd.Grad((x.Detach().Exp()).Sum(), [x])[0];
        Close.AssertAll(new double[3], g2.ToArray<double>(), 0, "grad of detached-only loss");
        // A parameter the loss does not use gets zeros of its shape.
        var unused = Tensor.Ones([2, 2], F64);
        var gs = Autograd.Grad(x.Sum(), [x, unused]);
        Assert.Equal(new[] { 2, 2 }, gs[1].Shape);
        Close.AssertAll(new double[4], gs[1].ToArray<double>(), 0, "grad of unused parameter");
    }

    [Fact]
    public void GradWithOneOrTwoParametersIsNotMistakenForTheSeedOverload()
    {
        // Autograd.Grad(loss, x) and Grad(loss, a, b) are the natural spellings of "gradient of loss wrt x (a, b)".
        var xd = new Nd([3], [0.5, -1.5, 2.0]);
        var x = xd.ToTensor(F64);
        var loss = (x * x).Sum();
        var g = Autograd.Grad(loss, x);
        Assert.Single(g);
        Close.AssertAll(xd.Data.Select(v => 2 * v).ToArray(), g[0].ToArray<double>(), 0, "Grad(loss, x)");

        var w = Tensor.Scalar(3.0, F64);
        var g2 = Autograd.Grad((x * w).Sum(), x, w);
        Assert.Equal(2, g2.Length);
        Close.AssertAll([3, 3, 3], g2[0].ToArray<double>(), 0, "Grad(loss, x, w) wrt x");
        Close.AssertAll([xd.Data.Sum()], g2[1].ToArray<double>(), 1e-15, "Grad(loss, x, w) wrt w");

        // A 0-d parameter has the loss's shape, so it can even be taken silently as the seed.
        var gw = Autograd.Grad((x * w).Sum(), w);
        Assert.Single(gw);
        Close.AssertAll([xd.Data.Sum()], gw[0].ToArray<double>(), 1e-15, "Grad(loss, w) for a 0-d w");
    }

    [Fact]
    public void GradientFlowsThroughCasts()
    {
        // d/dx sum(cast_f32(x) · 3) = 3 in x's dtype (f64 → f32 → f64 is exact for 3).
        var x = R("cast", 0, 2, 3).ToTensor(F64);
        var g = Autograd.Grad((x.Cast(DType.Float32) * 3).Sum(), [x])[0];
        Assert.Equal(F64, g.DType);
        Close.AssertAll(Enumerable.Repeat(3.0, 6).ToArray(), g.ToArray<double>(), 0, "grad through cast");
        // No gradient flows into an integer cast.
        var gi = Autograd.Grad((x.Cast(DType.Int64).Cast(F64) * 3).Sum(), [x])[0];
        Close.AssertAll(new double[6], gi.ToArray<double>(), 0, "grad through integer cast");
    }

    [Fact]
    public void VectorJacobianProductMatchesSeededSum()
    {
        var a = R("vjp", 0, 3, 4).ToTensor(F64);
        var b = R("vjp", 1, 4, 2).ToTensor(F64);
        var seed = R("vjp", 2, 3, 2).ToTensor(F64);
        var y = a.MatMul(b).Tanh();
        var viaSeed = Autograd.Vjp(y, seed, [a, b]);
        var viaSum = Autograd.Grad((y * seed).Sum(), [a, b]);
        Close.AssertAll(viaSum[0].ToArray<double>(), viaSeed[0].ToArray<double>(), 1e-14, "vjp wrt a");
        Close.AssertAll(viaSum[1].ToArray<double>(), viaSeed[1].ToArray<double>(), 1e-14, "vjp wrt b");
    }

    [Fact]
    public void GradientsOfReducedPrecisionInputsKeepTheirDType()
    {
        // Gradients are cast back to each input's dtype; values agree with the f64 gradient to bf16 precision.
        var xd = R("bf16grad", 0, 3, 4);
        var x16 = xd.ToTensor(DType.BFloat16);
        var g16 = Autograd.Grad(x16.Tanh().Sum(), [x16])[0];
        Assert.Equal(DType.BFloat16, g16.DType);
        var expected = xd.RoundTo(DType.BFloat16).Map(v => 1 - Math.Tanh(v) * Math.Tanh(v));
        Nd.AssertClose(expected, g16, 2e-2, "bf16 tanh gradient");
    }
}
