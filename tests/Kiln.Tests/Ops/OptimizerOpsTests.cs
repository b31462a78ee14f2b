namespace Kiln.Tests.Ops;

using Ops = Kiln.Ops;

public class OptimizerOpsTests
{
    [Fact]
    public void SumOfSquaresOverManyTensors()
    {
        var ts = new[] { Tensor.RandomNormal([3, 5], 1), Tensor.RandomNormal([7000], 2), Tensor.RandomNormal([2, 2, 2], 3) };
        double expected = ts.Sum(t => t.ToArray<float>().Sum(v => (double)v * v));
        Assert.Equal(expected, Ops.SumOfSquares(ts).Item<float>(), expected * 1e-6);
        Assert.Throws<ArgumentException>(() => Ops.SumOfSquares([]));
    }

    [Fact]
    public void MultiTensorAdamWMatchesThePerElementFormula()
    {
        int[][] shapes = [[3, 4], [17], [2, 3, 5]];
        var p = shapes.Select((s, i) => Tensor.RandomNormal(s, 10 + i)).ToArray();
        var g = shapes.Select((s, i) => Tensor.RandomNormal(s, 20 + i)).ToArray();
        var m = shapes.Select((s, i) => Tensor.RandomNormal(s, 30 + i, std: 0.1)).ToArray();
        var v = shapes.Select((s, i) => Tensor.RandomUniform(s, 40 + i, 0, 0.1)).ToArray();
        const float stepSize = 0.05f, denomScale = 1.3f, decay = 0.999f, gradScale = 0.7f;
        const double b1 = 0.9, b2 = 0.99, eps = 1e-8;
        var r = Ops.AdamWUpdate(p, g, m, v, Tensor.FromArray([stepSize], []), Tensor.FromArray([denomScale], []), Tensor.FromArray([decay], []),
            Tensor.FromArray([gradScale], []), b1, b2, eps);
        for (int k = 0; k < shapes.Length; k++)
        {
            float[] ps = p[k].ToArray<float>(), gs = g[k].ToArray<float>(), ms = m[k].ToArray<float>(), vs = v[k].ToArray<float>();
            float[] p2 = r[k].P.ToArray<float>(), m2 = r[k].M.ToArray<float>(), v2 = r[k].V.ToArray<float>();
            Assert.Equal(shapes[k], r[k].P.Shape);
            for (int i = 0; i < ps.Length; i++)
            {
                double gi = gs[i] * gradScale, mi = b1 * ms[i] + (1 - b1) * gi, vi = b2 * vs[i] + (1 - b2) * gi * gi;
                double pi = ps[i] * decay - stepSize * mi / (Math.Sqrt(vi) * denomScale + eps);
                Assert.Equal(mi, m2[i], 1e-6); Assert.Equal(vi, v2[i], 1e-6); Assert.Equal(pi, p2[i], 1e-5);
            }
        }
    }

    [Fact]
    public void AdamWRejectsMismatchedShapes()
    {
        var a = Tensor.Zeros([3]); var b = Tensor.Zeros([4]); var s = Tensor.FromArray([1f], []);
        var e = Assert.Throws<ArgumentException>(() => Ops.AdamWUpdate([a], [b], [a], [a], s, s, s, s, 0.9, 0.999, 1e-8));
        Assert.Contains("adamw_update", e.Message);
    }
}
