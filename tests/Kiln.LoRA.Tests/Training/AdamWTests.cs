using Kiln.LoRA.Training;

namespace Kiln.LoRA.Tests.Training;

public class AdamWTests
{
    [Fact]
    public void MatchesTheTorchFormulaStepByStep()
    {
        var o = new AdamWOptions(0.9, 0.99, 1e-8, 0.1);
        double[] p = [0.5, -1.0, 2.0], m = new double[3], v = new double[3];
        var pt = Tensor.FromArray(p.Select(x => (float)x).ToArray(), [3]);
        var opt = new AdamW([pt], o);
        double[][] grads = [[0.1, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.0, 0.2]];
        double[] lrs = [0.1, 0.05, 0.02];
        for (int t = 1; t <= 3; t++)
        {
            var g = grads[t - 1]; double lr = lrs[t - 1];
            for (int i = 0; i < 3; i++)   // torch.optim.AdamW, written out
            {
                p[i] *= 1 - lr * o.WeightDecay;
                m[i] = o.Beta1 * m[i] + (1 - o.Beta1) * g[i];
                v[i] = o.Beta2 * v[i] + (1 - o.Beta2) * g[i] * g[i];
                double bc1 = 1 - Math.Pow(o.Beta1, t), bc2 = 1 - Math.Pow(o.Beta2, t);
                p[i] -= lr / bc1 * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(bc2) + o.Eps);
            }
            var update = opt.Update([pt], [Tensor.FromArray(g.Select(x => (float)x).ToArray(), [3])], lr);
            Tensor.Eval([.. update.Outputs]);
            pt = update.Commit()[0];
            var got = pt.ToArray<float>();
            for (int i = 0; i < 3; i++) Assert.True(Math.Abs(got[i] - p[i]) < 1e-6, $"step {t} p[{i}]: {got[i]} vs {p[i]}");
        }
        Assert.Equal(3, opt.Step);
    }
}
