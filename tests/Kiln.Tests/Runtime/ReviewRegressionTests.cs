// Regressions for defects found in review: each input used to give a silent wrong answer or an unnamed crash.
namespace Kiln.Tests.Runtime;

using Ops = Kiln.Ops;

public class ReviewRegressionTests
{
    [Fact]
    public void IntegerTensorRejectsAFractionalScalar()
    {
        var t = Tensor.FromArray(new long[] { 0, 1, 2 });
        var ex = Assert.Throws<ArgumentException>(() => t < 0.5);
        Assert.Contains("0.5", ex.Message);
        Assert.Contains("i64", ex.Message);
        Assert.Equal(new long[] { 0, 2, 4 }, (t * 2).ToArray<long>());
        Assert.Equal(new[] { false, true, true }, (t >= 1).ToArray<bool>());
    }

    [Fact]
    public void CrossEntropyGradientChecksTargetsWhenEvaluatedAlone()
    {
        var logits = Tensor.RandomNormal([3, 5], seed: 1, dtype: DType.Float64);
        var targets = Tensor.FromArray(new long[] { 1, 7, 2 });
        var g = Autograd.Grad(Ops.CrossEntropy(logits, targets), logits)[0];
        var ex = Assert.Throws<IndexOutOfRangeException>(() => g.Eval());
        Assert.Contains("7", ex.Message);
        Assert.Contains("5 classes", ex.Message);
    }

    [Fact]
    public void SecondDerivativeThroughAnOpWithoutARuleIsAnError()
    {
        var logits = Tensor.RandomNormal([3, 5], seed: 2, dtype: DType.Float64);
        var targets = Tensor.FromArray(new long[] { 1, 0, 2 });
        var g = Autograd.Grad(Ops.CrossEntropy(logits, targets), logits)[0];
        var ex = Assert.Throws<NotSupportedException>(() => Autograd.Grad(g.Sum(), logits));
        Assert.Contains("cross_entropy_grad", ex.Message);
    }

    [Fact]
    public void SliceWithAHugeStepKeepsTheFirstElement()
    {
        var x = Tensor.Arange(0, 10, dtype: DType.Float32);
        var s = x.Slice(0, 0, 10, int.MaxValue);
        Assert.Equal([1], s.Shape);
        Assert.Equal(new[] { 0f }, s.ToArray<float>());
    }

    [Fact]
    public void RopeNeedsANonEmptyHeadDim()
    {
        var x = Tensor.Zeros([2, 3, 0]);
        var ex = Assert.Throws<ArgumentException>(() => x.Rope());
        Assert.Contains("rope", ex.Message);
    }

    [Fact]
    public void ResultsBeyondTheArrayLimitAreRejectedWhenBuilt()
    {
        var a = Tensor.Zeros([65536, 1], DType.Int32);
        var b = Tensor.Zeros([1, 65536], DType.Int32);
        var ex = Assert.Throws<ArgumentException>(() => a > b);
        Assert.Contains("gt", ex.Message);
        Assert.Contains("(65536, 65536)", ex.Message);
    }

    [Fact]
    public void IntegerDivisionIsTrueDivisionLikeTorch()
    {
        var a = Tensor.FromArray(new long[] { 7, -7, 1 });
        var b = Tensor.FromArray(new long[] { 2, 2, 0 });
        var q = a / b;
        Assert.Equal(DType.Float32, q.DType);
        Assert.Equal(new[] { 3.5f, -3.5f, float.PositiveInfinity }, q.ToArray<float>());
        Assert.Equal(new[] { 2.5f, -2.5f, 0.5f }, (Tensor.FromArray(new int[] { 5, -5, 1 }) / 2).ToArray<float>());
    }

    [Fact]
    public void BoolTensorsAreRejectedWhereNoKernelExists()
    {
        var m = Tensor.FromArray(new[] { true, false });
        Assert.Contains("sum", Assert.Throws<ArgumentException>(() => m.Sum()).Message);
        Assert.Contains("eq", Assert.Throws<ArgumentException>(() => Ops.Eq(m, m)).Message);
        Assert.Contains("pad", Assert.Throws<ArgumentException>(() => m.Pad([1], [0])).Message);
        Assert.Equal(1L, m.Cast(DType.Int64).Sum().Item<long>());
    }

    [Fact]
    public void FullKeepsNegativeZero()
    {
        var z = Tensor.Full([2], -0.0).ToArray<float>();
        Assert.True(float.IsNegative(z[0]) && z[0] == 0);
    }

    [Fact]
    public void KernelErrorsInsideThreadedLoopsKeepTheirType()
    {
        // Large enough for the cross-entropy rows to be split across threads.
        var logits = Tensor.Zeros([4096, 64]);
        var t = new long[4096]; t[4000] = 99;
        var ex = Assert.Throws<IndexOutOfRangeException>(() => Ops.CrossEntropy(logits, Tensor.FromArray(t)).Eval());
        Assert.Contains("target 99 at row 4000", ex.Message);
    }
}
