// The fused fp32 exp+sum used by softmax against double-precision Math.Exp, over every tail length and the
// edges (−∞, NaN, overflow, underflow to zero).
using Kiln.Cpu;

namespace Kiln.Tests.Cpu;

public class FastExpTests
{
    [Fact]
    public void MatchesMathExpForEveryLengthAndShift()
    {
        var rng = new Random(7);
        for (int n = 0; n <= 100; n++)
        {
            var x = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 60 - 40)).ToArray();
            var y = new float[n];
            float shift = n == 0 ? 0 : x.Max();
            float sum = FastExp.ExpShiftedSum(x, shift, y);
            double expectedSum = 0;
            for (int i = 0; i < n; i++)
            {
                double e = Math.Exp((double)(x[i] - shift));   // the kernel subtracts in fp32 too
                expectedSum += e;
                Assert.True(Math.Abs(y[i] - e) <= 3e-7 * e + 1e-38, $"n={n} i={i}: exp({x[i]} - {shift}) = {y[i]}, expected {e}");
            }
            Assert.True(Math.Abs(sum - expectedSum) <= 1e-6 * expectedSum + 1e-38, $"n={n}: sum {sum}, expected {expectedSum}");
        }
    }

    [Fact]
    public void EdgeValues()
    {
        float[] x = [float.NegativeInfinity, float.NaN, 100f, -100f, 0f, 88f, -87f, 1e-30f,
                     float.NegativeInfinity, 2f, 3f, 4f, 5f, 6f, 7f, 8f, -0f];   // 17: one vector and a tail
        var y = new float[x.Length];
        FastExp.ExpShiftedSum(x, 0, y);
        Assert.Equal(0f, y[0]);
        Assert.True(float.IsNaN(y[1]));
        Assert.True(float.IsInfinity(y[2]) || y[2] > 1e38f, $"exp(100) = {y[2]}");
        Assert.Equal(0f, y[3]);
        Assert.Equal(1f, y[4]);
        Assert.Equal(Math.Exp(88), y[5], 1e31);
        Assert.Equal(Math.Exp(-87), y[6], 1e-43);
        Assert.Equal(1f, y[7]);
        Assert.Equal(0f, y[8]);
        Assert.Equal(1f, y[16]);
    }
}
