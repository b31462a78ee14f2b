// Every op, forward and gradient, against PyTorch's float64 values (data/ops/reference.json); the same
// cases again in fp32 with an fp32 tolerance, so the single-precision kernels are held to PyTorch too.
namespace Kiln.Tests.Reference;

public class ReferenceConformanceTests
{
    public static TheoryData<int> CaseIndices() => new(ReferenceCases.Cases.Select(c => c.Index));

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Float64MatchesPyTorch(int index) => Check(ReferenceCases.Cases[index], DType.Float64, 1e-9);

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Float32MatchesPyTorch(int index) => Check(ReferenceCases.Cases[index], DType.Float32, 2e-5);

    private static void Check(RefCase c, DType dtype, double tol)
    {
        var inputs = c.Inputs.Select(t => t.ToTensor(dtype)).ToArray();
        var y = ReferenceOps.Build(c, inputs);
        Assert.Equal(c.Output.Shape, y.Shape);
        Close.AssertAll(c.Output.Data, y.ToArray<double>(), tol, $"{c} forward ({dtype.ShortName()})");
        if (c.Grads is null || c.Upstream is null) return;
        var differentiable = Enumerable.Range(0, inputs.Length).Where(i => c.Grads[i] is not null).ToArray();
        var grads = Autograd.Vjp(y, c.Upstream.ToTensor(dtype), differentiable.Select(i => inputs[i]).ToArray());
        Tensor.Eval(grads);
        for (int k = 0; k < differentiable.Length; k++)
        {
            var expected = c.Grads[differentiable[k]]!;
            Assert.Equal(expected.Shape, grads[k].Shape);
            Close.AssertAll(expected.Data, grads[k].ToArray<double>(), tol, $"{c} grad of input {differentiable[k]} ({dtype.ShortName()})");
        }
    }
}
