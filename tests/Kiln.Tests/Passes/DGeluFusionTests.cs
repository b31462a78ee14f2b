// The tanh-GELU backward as a GEMM epilogue: autograd writes it as upstream · gelu_tanh_grad(pre); when the upstream
// is a product read by nothing else, MatMulProgramFusion folds the two into one matmul_program node. On CUDA it does
// so only for this exact program (cuBLASLt's DGELU epilogue, pre as the auxiliary matrix) and for the dtypes cuBLASLt
// takes; on the CPU, as for any program. Graph-level checks, no GPU needed (the nodes only name a CUDA device).
using Kiln.Graph;
using Kiln.Passes;

namespace Kiln.Tests.Passes;

public class DGeluFusionTests
{
    private static Node Leaf(int[] shape, DType dt, Device d) => new(OpTable.Constant, [], new LeafAttrs("test"), shape, dt, d);

    /// <summary>product(x, w) combined with pre by <paramref name="combine"/>, optimized with the leaves as inputs.</summary>
    private static Node Optimized(Device d, DType dt, Func<Node, Node, Node> combine, bool preIsAProduct = false)
    {
        int[] shape = [3, 20, 40];
        var x = Leaf([3, 20, 48], dt, d); var w = Leaf([48, 40], dt, d);
        var pre = preIsAProduct ? new Node(OpTable.MatMul, [Leaf([3, 20, 16], dt, d), Leaf([16, 40], dt, d)], null, shape, dt, d) : Leaf(shape, dt, d);
        var product = new Node(OpTable.MatMul, [x, w], null, shape, dt, d);
        var y = combine(product, pre);
        return GraphOptimizer.Optimize([y], isInput: n => n.InputArray.Length == 0).Outputs[0];
    }

    private static Func<Node, Node, Node> TimesDerivative(bool productFirst) => (p, pre) =>
    {
        var d = new Node(OpTable.GeluTanhGrad, [pre], null, pre.Shape, pre.DType, pre.Device);
        return new Node(OpTable.Mul, productFirst ? [p, d] : [d, p], null, p.Shape, p.DType, p.Device);
    };

    [Theory]
    [InlineData(DType.Float32, true)]
    [InlineData(DType.Float32, false)]
    [InlineData(DType.BFloat16, true)]
    [InlineData(DType.Float16, false)]
    public void OnCudaProductTimesTheDerivativeIsOneMatmulProgram(DType dt, bool productFirst)
    {
        var n = Optimized(Device.Cuda(0), dt, TimesDerivative(productFirst));
        Assert.Equal("matmul_program", n.Op.Name);
        var a = (MatMulProgramAttrs)n.Attrs!;
        Assert.Equal(2, a.MatMulInputs);
        Assert.Equal(1 - a.Slot, MatMulProgramFusion.DGeluAux(a.Program, a.Slot, n.InputArray.Length - 1));
        Assert.Equal([3, 20, 40], n.InputArray[2].Shape);   // pre, the epilogue's auxiliary matrix
    }

    [Fact]
    public void OnCudaTheProductMultipliedIsTheGemmEvenWhenThePreActivationIsAProductToo()
    {
        // Only the gradient evaluated: the forward's gelu is dead code, so pre = x₁·W₁ is read by the group alone.
        var n = Optimized(Device.Cuda(0), DType.Float32, TimesDerivative(false), preIsAProduct: true);
        Assert.Equal("matmul_program", n.Op.Name);
        Assert.Equal([48, 40], n.InputArray[1].Shape);            // the GEMM is x·W (the upstream), not x₁·W₁
        Assert.Equal("matmul", n.InputArray[2].Op.Name);          // x₁·W₁ is the auxiliary input, computed first
    }

    [Fact]
    public void OnCudaOtherProgramsAndFloat64StayAGemmAndAKernel()
    {
        var tanh = Optimized(Device.Cuda(0), DType.Float32, (p, pre) =>
            new Node(OpTable.Mul, [p, new Node(OpTable.Tanh, [pre], null, pre.Shape, pre.DType, pre.Device)], null, p.Shape, p.DType, p.Device));
        Assert.Equal("fused_elementwise", tanh.Op.Name);
        Assert.Equal("fused_elementwise", Optimized(Device.Cuda(0), DType.Float64, TimesDerivative(true)).Op.Name);
    }

    [Fact]
    public void OnTheCpuTheSameGraphIsAMatmulProgramToo()
    {
        var n = Optimized(Device.Cpu, DType.Float32, TimesDerivative(true));
        Assert.Equal("matmul_program", n.Op.Name);
    }

    [Fact]
    public void TheBackwardOfAGeluMlpOnTheCpuFoldsItAndMatchesTheUnfusedTwin()
    {
        // h = gelu_tanh(x·W1 + b1), loss = sum((h·W2)·u): dpre = (dy·W2ᵀ) · gelu_tanh_grad(pre).
        var x = Tensor.RandomNormal([4, 9, 16], 1); var w1 = Tensor.RandomNormal([16, 24], 2, std: 0.3);
        var b1 = Tensor.RandomNormal([24], 3, std: 0.1); var w2 = Tensor.RandomNormal([24, 8], 4, std: 0.3);
        var u = Tensor.RandomNormal([4, 9, 8], 5);
        Tensor[] Grads() => Autograd.Grad(((x.MatMul(w1) + b1).Gelu(GeluApproximation.Tanh).MatMul(w2) * u).Sum(), w1, b1);
        var fused = Grads();
        var names = new HashSet<string>();
        void Walk(Node n) { if (names.Add($"{n.Op.Name}#{n.Id}")) foreach (var i in n.InputArray) Walk(i); }
        foreach (var g in GraphOptimizer.Optimize(fused.Select(t => t.Node).ToArray()).Outputs) Walk(g);
        Assert.Contains(names, s => s.StartsWith("matmul_program#"));
        Tensor.Eval(fused);
        var twin = Grads();
        Kiln.Runtime.Evaluator.Evaluate(twin.Select(t => t.Node).ToArray(), optimize: false);
        for (int i = 0; i < 2; i++) Close.AssertAll(twin[i].ToArray<double>(), fused[i].ToArray<double>(), 1e-5, $"gradient {i}");
    }
}
