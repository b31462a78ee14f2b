using Kiln.Runtime;

namespace Kiln.Tests.Ops;

using Ops = Kiln.Ops;

/// <summary>Gradient checkpointing: same gradients, the segment recomputed in the backward pass, less memory held.</summary>
[Collection(nameof(KernelCountingCollection))]
public class CheckpointTests
{
    /// <summary>A deep stack of wide elementwise/matmul layers whose activations dominate memory.</summary>
    private static (Tensor Loss, Tensor[] Params) Model(bool checkpoint, int layers = 6)
    {
        var x = Tensor.RandomNormal([1024, 64], 1);
        var ws = Enumerable.Range(0, layers).Select(i => Tensor.RandomNormal([64, 64], 10 + i, std: 0.12)).ToArray();
        var h = x;
        foreach (var w in ws)
        {
            if (checkpoint) h = Ops.Checkpoint(h);
            var a = h.MatMul(w);
            h = h + (a.Silu() * a.Sigmoid()).Tanh();
        }
        return (h.Square().Mean(), ws);
    }

    [Fact]
    public void GradientsAreUnchangedAndTheSegmentsAreRecomputed()
    {
        var (l0, p0) = Model(checkpoint: false);
        var g0 = Autograd.Grad(l0, p0);
        long plainKernels = KernelCount.Of(() => Tensor.Eval([l0, .. g0]));
        long plainPeak = Evaluator.LastPeakBytes;

        var (l1, p1) = Model(checkpoint: true);
        var g1 = Autograd.Grad(l1, p1);
        long ckptKernels = KernelCount.Of(() => Tensor.Eval([l1, .. g1]));
        long ckptPeak = Evaluator.LastPeakBytes;

        Assert.Equal(l0.Item<float>(), l1.Item<float>());
        for (int i = 0; i < p0.Length; i++) Close.AssertAll(g0[i].ToArray<double>(), g1[i].ToArray<double>(), 1e-6, $"grad {i}");
        Assert.True(ckptKernels > plainKernels, $"expected recomputation: {ckptKernels} kernels with checkpointing, {plainKernels} without");
        Assert.True(ckptPeak < plainPeak * 0.75, $"peak intermediate memory {ckptPeak} B with checkpointing vs {plainPeak} B without");
    }

    [Fact]
    public void MarkIsTheIdentityForward()
    {
        var x = Tensor.RandomNormal([3, 5], 2);
        Assert.Equal(x.ToArray<float>(), Ops.Checkpoint(x).ToArray<float>());
        var g = Autograd.Grad((Ops.Checkpoint(x) * 3).Sum(), x)[0];
        Assert.All(g.ToArray<float>(), v => Assert.Equal(3f, v));
    }
}
