// Cross-entropy as people write it with primitives (nll of log_softmax via gather or a one-hot product,
// logsumexp − picked logit, masked by t != ignore and divided by the count) becomes the fused cross_entropy
// op: one kernel, the values of the primitives run as built and of Ops.CrossEntropy, the same gradients.
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Passes;

using Ops = Kiln.Ops;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]
public class CrossEntropyRecognitionTests
{
    private const int N = 37, C = 11;
    private static readonly Tensor X = Tensor.RandomNormal([N, C], seed: 21, dtype: DType.Float64);
    private static readonly long[] Labels = Enumerable.Range(0, N).Select(i => (long)(i * 7 % C)).ToArray();
    private static readonly long[] Masked = Labels.Select((l, i) => i % 5 == 2 ? -100L : l).ToArray();

    private static Tensor T(long[] v) => Tensor.FromArray(v);
    private static Tensor Mask(Tensor t) => Ops.Ne(t, Tensor.Scalar(-100, DType.Int64));
    private static Tensor Pick(Tensor z, Tensor idx) => Ops.Gather(z, z.Rank - 1, idx.Unsqueeze(-1)).Squeeze(-1);
    private static Tensor LogSoftmaxByHand(Tensor x)
    {
        var d = x - x.Max([-1], keepDim: true);
        return d - d.Exp().Sum([-1], keepDim: true).Log();
    }

    public static TheoryData<string> Forms => new()
    {
        "nll_gather", "nll_primitive_log_softmax", "nll_keepdim_no_squeeze", "sum_over_n", "times_minus_one",
        "logsumexp", "log_softmax_as_x_minus_logsumexp", "one_hot", "masked_mul", "masked_where_int_count", "masked_no_where",
    };

    private static (Tensor Loss, long[] Targets, int Ignore) Build(string form, Tensor x)
    {
        var t = T(Labels);
        var tm = T(Masked);
        switch (form)
        {
            case "nll_gather": return (-Pick(x.LogSoftmax(-1), t).Mean(), Labels, -100);
            case "nll_primitive_log_softmax": return (-Pick(LogSoftmaxByHand(x), t).Mean(), Labels, -100);
            case "nll_keepdim_no_squeeze": return ((-Ops.Gather(x.LogSoftmax(-1), 1, t.Reshape(N, 1))).Mean(), Labels, -100);
            case "sum_over_n": return (-Pick(x.LogSoftmax(-1), t).Sum() / N, Labels, -100);
            case "times_minus_one": return ((Pick(x.LogSoftmax(-1), t) * -1).Mean(), Labels, -100);
            case "logsumexp": return ((x.LogSumExp([-1]) - Pick(x, t)).Mean(), Labels, -100);
            case "log_softmax_as_x_minus_logsumexp": return (-Pick(x - x.LogSumExp([-1], keepDim: true), t).Mean(), Labels, -100);
            case "one_hot":
                var oh = Ops.ScatterAdd(Tensor.Zeros([N, C], x.DType), 1, t.Unsqueeze(1), Tensor.Ones([N, 1], x.DType));
                return (-(oh * x.LogSoftmax(-1)).Sum([1]).Mean(), Labels, -100);
            case "masked_mul":
            {
                var mask = Mask(tm);
                var nll = -Pick(x.LogSoftmax(-1), Ops.Where(mask, tm, 0));
                var m = mask.Cast(x.DType);
                return ((nll * m).Sum() / m.Sum(), Masked, -100);
            }
            case "masked_where_int_count":
            {
                var mask = Mask(tm);
                var picked = Pick(x.LogSoftmax(-1), Ops.Where(mask, tm, 0));
                return (-(Ops.Where(mask, picked, 0).Sum() / mask.Cast(DType.Int64).Sum()), Masked, -100);
            }
            case "masked_no_where":   // ignore a class id (padding token 0): gather with t itself
            {
                var mask = Ops.Ne(t, Tensor.Scalar(0, DType.Int64));
                var m = mask.Cast(x.DType);
                return ((-Pick(x.LogSoftmax(-1), t) * m).Sum() / m.Sum(), Labels, 0);
            }
            default: throw new ArgumentException(form);
        }
    }

    [Theory]
    [MemberData(nameof(Forms))]
    public void EachFormIsOneCrossEntropyKernel(string form)
    {
        var (loss, targets, ignore) = Build(form, X);
        Assert.Equal("cross_entropy", GraphOptimizer.Optimize([loss.Node]).Outputs[0].Op.Name);
        Assert.Equal(1, KernelCount.Of(() => loss.Eval()));
        var twin = Build(form, X).Loss;
        Evaluator.Evaluate([twin.Node], optimize: false);
        double expected = Ops.CrossEntropy(X, T(targets), ignore).Item<double>();
        Close.AssertAll([twin.Item<double>(), expected], [loss.Item<double>(), loss.Item<double>()], 1e-12, form);
        // Switched off (KILN_DISABLE=crossentropy, or fusion): the primitives stay.
        Assert.NotEqual("cross_entropy", GraphOptimizer.Optimize([Build(form, X).Loss.Node], n => n != "crossentropy").Outputs[0].Op.Name);
    }

    [Theory]
    [MemberData(nameof(Forms))]
    public void GradientsMatchTheUnfusedTwin(string form)
    {
        var x = Tensor.RandomNormal([N, C], seed: 22, dtype: DType.Float64);
        var (loss, _, _) = Build(form, x);
        var g = Autograd.Grad(loss, x)[0];
        Tensor.Eval(loss, g);
        var (twinLoss, _, _) = Build(form, x);
        var twinGrad = Autograd.Grad(twinLoss, x)[0];
        Evaluator.Evaluate([twinLoss.Node, twinGrad.Node], optimize: false);
        Close.AssertAll(twinGrad.ToArray<double>(), g.ToArray<double>(), 1e-12, form + " grad");
        Close.AssertAll([twinLoss.Item<double>()], [loss.Item<double>()], 1e-12, form);
    }

    [Fact]
    public void SequenceLogitsAreFlattened()
    {
        var x = Tensor.RandomNormal([3, 5, 17], seed: 23);
        var t = Tensor.FromArray(Enumerable.Range(0, 15).Select(i => (long)(i * 3 % 17)).ToArray(), [3, 5]);
        Tensor Loss() => -Ops.Gather(x.LogSoftmax(-1), 2, t.Unsqueeze(2)).Mean();
        var loss = Loss();
        Assert.Equal("cross_entropy", GraphOptimizer.Optimize([loss.Node]).Outputs[0].Op.Name);
        Assert.Equal(3, KernelCount.Of(() => loss.Eval()));   // the op and two reshape views
        var twin = Loss();
        Evaluator.Evaluate([twin.Node], optimize: false);
        Close.AssertAll([twin.Item<float>()], [loss.Item<float>()], 2e-6, "3-d");
    }

    [Fact]
    public void LookalikesStayPrimitives()
    {
        var t = T(Labels);
        // A sum over the wrong count, a positive nll and a gather along the batch axis are not cross-entropy.
        Tensor[] others =
        [
            -Pick(X.LogSoftmax(-1), t).Sum() / (N + 1),
            Pick(X.LogSoftmax(-1), t).Mean(),
            -Ops.Gather(X.LogSoftmax(0), 1, t.Reshape(N, 1)).Mean(),
            -Ops.Gather(X.LogSoftmax(-1), 0, Tensor.FromArray(new long[C], [1, C])).Mean(),
        ];
        foreach (var o in others)
            Assert.NotEqual("cross_entropy", GraphOptimizer.Optimize([o.Node]).Outputs[0].Op.Name);
    }
}
