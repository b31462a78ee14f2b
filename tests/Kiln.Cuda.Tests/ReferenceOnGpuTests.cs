// The op conformance suite on the GPU: every case of data/ops/reference.json (PyTorch's float64 forward values
// and gradients) built from tensors on cuda:0, forward and backward, with the CPU suite's tolerances. One test per
// dtype that reports every failing case at once (a per-case theory would add ~300 skipped rows to CI's count).
// fp64: the hand-written kernels (norms, softmax, attention, RoPE, cross-entropy) have no fp64 form; those cases
// must fail with a clear NotSupportedException.
using Kiln.Cuda.Backend;
using Kiln.Tests;
using Kiln.Tests.Reference;

namespace Kiln.Cuda.Tests;

[Collection("gpu")]
public class ReferenceOnGpuTests
{
    [Theory]
    [InlineData(DType.Float32, 2e-5)]
    [InlineData(DType.Float64, 1e-9)]
    public void EveryReferenceCaseMatchesPyTorchOnTheGpu(DType dtype, double tol)
    {
        Gpu.Context();
        KilnCuda.Register();
        var failures = new List<string>();
        foreach (var c in ReferenceCases.Cases)
        {
            try
            {
                if (dtype == DType.Float64 && NoFloat64Kernel.Contains(c.Op))
                {
                    // No fp64 form of these hand-written kernels: a clear error naming the op and dtype, never a CPU run.
                    var e = Assert.ThrowsAny<NotSupportedException>(() => Check(c, dtype, tol));
                    Assert.Contains("f64", e.Message);
                }
                else Check(c, dtype, tol);
            }
            catch (Exception e) { failures.Add($"{c}: {e.GetType().Name}: {e.Message.Split('\n')[0]}"); }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {ReferenceCases.Cases.Length} cases failed on the GPU ({dtype.ShortName()}):\n" + string.Join("\n", failures));
    }

    /// <summary>Ops whose CUDA kernels are fp32/bf16/fp16 only (what a model trains and runs in).</summary>
    private static readonly HashSet<string> NoFloat64Kernel =
        ["softmax", "log_softmax", "rms_norm", "layer_norm", "causal_attention", "causal_attention_gqa", "rope", "cross_entropy", "cross_entropy_smoothed"];

    private static void Check(RefCase c, DType dtype, double tol)
    {
        var d = Device.Cuda(0);
        var inputs = c.Inputs.Select(t => t.ToTensor(dtype).To(d)).ToArray();
        var y = ReferenceOps.Build(c, inputs);
        Assert.Equal(c.Output.Shape, y.Shape);
        Assert.Equal(d, y.Device);
        Close.AssertAll(c.Output.Data, y.ToArray<double>(), tol, $"{c} forward ({dtype.ShortName()})");
        if (c.Grads is null || c.Upstream is null) return;
        var differentiable = Enumerable.Range(0, inputs.Length).Where(i => c.Grads[i] is not null).ToArray();
        var grads = Autograd.Vjp(y, c.Upstream.ToTensor(dtype).To(d), differentiable.Select(i => inputs[i]).ToArray());
        Tensor.Eval(grads);
        for (int k = 0; k < differentiable.Length; k++)
        {
            var expected = c.Grads[differentiable[k]]!;
            Assert.Equal(expected.Shape, grads[k].Shape);
            Assert.Equal(d, grads[k].Device);
            Close.AssertAll(expected.Data, grads[k].ToArray<double>(), tol, $"{c} grad of input {differentiable[k]} ({dtype.ShortName()})");
        }
    }
}
