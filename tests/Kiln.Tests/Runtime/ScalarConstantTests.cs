// Scalars written into expressions (`x * 0.5`) are shared realised fill nodes, one per (value bits, dtype,
// device): no constant is allocated per op and a graph's repeated scalars are one plan input. The public
// constructors still make a tensor of the caller's own, which they may dispose.
using Kiln.Graph;

namespace Kiln.Tests.Runtime;

public class ScalarConstantTests
{
    [Fact]
    public void TheSameScalarIsOneNodeAndOtherBitsDtypesOrValuesAreNot()
    {
        var x = Tensor.RandomNormal([4], 1); var y = Tensor.RandomNormal([4], 2);
        Node Scalar(Tensor t) => t.Node.Inputs[1];
        Assert.Same(Scalar(x * 0.5), Scalar(y * 0.5));
        Assert.Same(Scalar(x + 0.5), Scalar(y * 0.5));
        Assert.NotSame(Scalar(x * 0.5), Scalar(x * 0.25));
        Assert.NotSame(Scalar(x * 0.0), Scalar(x * -0.0));
        Assert.NotSame(Scalar(x * 0.5), Scalar(x.Cast(DType.Float64) * 0.5));
    }

    [Fact]
    public void APlanForTimesNegativeZeroIsNotReusedForTimesZero()
    {
        // Fills are part of a plan's key and constant folding bakes them in: 1·(-0.0) folds to -0.0, so the key
        // must tell -0.0 from 0.0 (double equality does not).
        var one = Tensor.Full([3], 1.0);
        Assert.All((one * -0.0).ToArray<float>(), v => Assert.True(float.IsNegative(v)));
        Assert.All((one * 0.0).ToArray<float>(), v => Assert.False(float.IsNegative(v)));
    }

    [Fact]
    public void DisposingAUsersOwnScalarLeavesExpressionScalarsAlone()
    {
        var mine = Tensor.Scalar(0.125);
        var x = Tensor.FromArray(new float[] { 8, 16 }, [2]);
        mine.Dispose();
        Assert.Equal(new float[] { 1, 2 }, (x * 0.125).ToArray<float>());
        Assert.Equal(new float[] { 1, 2 }, (x * 0.125).ToArray<float>());
    }
}
