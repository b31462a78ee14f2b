namespace Kiln.Tests.Ops;

using Ops = Kiln.Ops;

/// <summary>The fused norm backward kernels against autograd through the norms written as primitives, on
/// shapes big enough to split rows across threads (partial weight gradients summed).</summary>
public class NormGradTests
{
    [Theory]
    [InlineData(300, 257)]
    [InlineData(3, 4097)]
    [InlineData(1, 1)]
    public void RmsNormAndLayerNormGradientsMatchThePrimitives(int rows, int d)
    {
        foreach (var dt in new[] { DType.Float64, DType.Float32 })
        {
            var x = Tensor.RandomNormal([rows, d], 1, dtype: dt); var w = Tensor.RandomNormal([d], 2, dtype: dt);
            var b = Tensor.RandomNormal([d], 3, dtype: dt); var up = Tensor.RandomNormal([rows, d], 4, dtype: dt);
            double tol = dt == DType.Float64 ? 1e-10 : 2e-3;

            var fused = Autograd.Grad((Ops.RmsNorm(x, w, 1e-5) * up).Sum(), x, w);
            var byHand = Autograd.Grad((x * (x.Square().Mean([-1], keepDim: true) + 1e-5).Rsqrt() * w * up).Sum(), x, w);
            for (int i = 0; i < 2; i++) Close.AssertAll(Plain(byHand[i]), fused[i].ToArray<double>(), tol, $"rms grad {i} {dt}");

            var lf = Autograd.Grad((Ops.LayerNorm(x, w, b, 1e-5) * up).Sum(), x, w, b);
            var mu = x.Mean([-1], keepDim: true);
            var xc = x - mu;
            var lh = Autograd.Grad(((xc * (xc.Square().Mean([-1], keepDim: true) + 1e-5).Rsqrt() * w + b) * up).Sum(), x, w, b);
            for (int i = 0; i < 3; i++) Close.AssertAll(Plain(lh[i]), lf[i].ToArray<double>(), tol, $"layer grad {i} {dt}");
        }
    }

    /// <summary>The primitives' gradient evaluated exactly as built (no recognition into the fused norm).</summary>
    private static double[] Plain(Tensor t)
    {
        Kiln.Runtime.Evaluator.Evaluate([t.Node], optimize: false);
        return t.ToArray<double>();
    }
}
