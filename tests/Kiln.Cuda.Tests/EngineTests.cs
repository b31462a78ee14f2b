// The engine running on the GPU: the same lazy graphs evaluated with tensors on cuda:0 and on the CPU give the
// same values (fp32 1e-5 relative + a small absolute floor for cancellations; fp64 1e-12).
using Kiln.Cuda.Backend;
using Kiln.Runtime;

namespace Kiln.Cuda.Tests;

[Collection("gpu")]
public class EngineTests
{
    private static Device Cuda()
    {
        Gpu.Context();
        KilnCuda.Register();
        return Device.Cuda(0);
    }

    private static void Close(Tensor cpu, Tensor gpu, double rel, string what)
    {
        Assert.Equal(cpu.Shape, gpu.Shape);
        Assert.Equal(Device.Cuda(0), gpu.Device);
        var e = cpu.ToArray<double>(); var a = gpu.ToArray<double>();
        for (int i = 0; i < e.Length; i++)
            Assert.True((double.IsNaN(e[i]) && double.IsNaN(a[i])) || e[i] == a[i] || Math.Abs(e[i] - a[i]) <= rel * Math.Abs(e[i]) + rel,
                $"{what}[{i}]: cpu {e[i]} gpu {a[i]}");   // NaN matches NaN, infinities match exactly
    }

    /// <summary>Evaluates f on CPU inputs and on their GPU copies.</summary>
    private static void Same(Func<Tensor[], Tensor> f, Tensor[] inputs, string what, double rel = 1e-5)
    {
        var d = Cuda();
        var gpuInputs = inputs.Select(t => t.To(d)).ToArray();
        Close(f(inputs), f(gpuInputs), inputs[0].DType == DType.Float64 ? 1e-12 : rel, what);
    }

    [Fact]
    public void TransfersRoundTripEveryDtype()
    {
        var d = Cuda();
        Assert.Equal(new[] { 1f, 2, 3 }, Tensor.FromArray(new[] { 1f, 2, 3 }, device: d).ToArray<float>());
        Assert.Equal(new[] { 1.5, -2 }, Tensor.FromArray(new[] { 1.5, -2 }).To(d).To(Device.Cpu).ToArray<double>());
        Assert.Equal(new long[] { 7, 8 }, Tensor.FromArray(new long[] { 7, 8 }).To(d).ToArray<long>());
        var t = Tensor.RandomNormal([5, 7], 1);
        Assert.Equal(t.T.ToArray<float>(), t.To(d).T.ToArray<float>());                 // a strided view read back
        Assert.Equal(t.ToArray<float>(), t.To(d).Cast(DType.Float64).ToArray<float>());  // cast kernel
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void ElementwiseOpsWithBroadcastAndStrides(DType dt)
    {
        var a = Tensor.RandomNormal([4, 33, 17], 1, dtype: dt); var b = Tensor.RandomNormal([33, 1], 2, dtype: dt);
        var c = Tensor.RandomUniform([17, 33], 3, 0.5, 2, dtype: dt);
        Same(x => x[0] + x[1], [a, b], "add broadcast");
        Same(x => x[0] * x[1].T / x[0].Exp().Tanh() - x[0].Sigmoid(), [a, c], "mixed with a transposed input");
        Same(x => Ops.Maximum(x[0].Silu(), x[0].Gelu()) + x[0].Abs().Sqrt().Log(), [a], "unary chain");
        Same(x => Ops.Pow(x[0], 1.7), [c], "pow");
    }

    [Theory]
    [InlineData(DType.BFloat16)]
    [InlineData(DType.Float16)]
    public void HalfPrecisionGraphsAreFusedOnTheGpu(DType dt)
    {
        // On CUDA the optimizer fuses bf16/fp16 as it does fp32: an elementwise chain is one kernel, a LoRA layer three
        // GEMMs (x·A; s·(x·A)·B; + x·W accumulated), matmul + bias + GELU one GEMM with cuBLASLt's epilogue. Against
        // the CPU, which runs the same graph op by op in fp32 rounding each result: 2e-2 relative.
        const double tol = 2e-2;
        var d = Cuda();
        var backend = (CudaBackend)Backends.For(d);
        long Launches(Func<Tensor> f, out Tensor r) { long before = backend.Launches; r = f().Eval(); return backend.Launches - before; }
        var x = Tensor.RandomNormal([3, 7, 72], 31, dtype: dt); var y = Tensor.RandomNormal([3, 7, 72], 32, dtype: dt);
        var w = Tensor.RandomNormal([72, 40], 33, std: 0.12, dtype: dt); var a = Tensor.RandomNormal([72, 6], 34, std: 0.12, dtype: dt);
        var b = Tensor.RandomNormal([6, 40], 35, std: 0.3, dtype: dt); var bias = Tensor.RandomNormal([40], 36, std: 0.1, dtype: dt);
        var (gx, gy, gw, ga, gb, gbias) = (x.To(d).Eval(), y.To(d).Eval(), w.To(d).Eval(), a.To(d).Eval(), b.To(d).Eval(), bias.To(d).Eval());

        Tensor Chain(Tensor p, Tensor q) => ((p * q + 0.5).Tanh() - q.Exp() * 0.25).Sigmoid() * 3.0;
        Assert.Equal(1, Launches(() => Chain(gx, gy), out var chain));
        Close(Chain(x, y), chain, tol, $"{dt} chain");

        Tensor Lora(Tensor p, Tensor pw, Tensor pa, Tensor pb) => p.MatMul(pw) + p.MatMul(pa).MatMul(pb) * 2.0;
        Assert.Equal(3, Launches(() => Lora(gx, gw, ga, gb), out var lora));
        Close(Lora(x, w, a, b), lora, tol, $"{dt} lora");

        Tensor Mlp(Tensor p, Tensor pw, Tensor pb) => (p.MatMul(pw) + pb).Gelu(GeluApproximation.Tanh);
        Assert.Equal(1, Launches(() => Mlp(gx, gw, gbias), out var mlp));
        Close(Mlp(x, w, bias), mlp, tol, $"{dt} matmul + bias + gelu");
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.BFloat16)]
    public void TheTanhGeluBackwardRunsInTheGemmsDGeluEpilogue(DType dt)
    {
        // h = gelu_tanh(x·W1 + b1), y = h·W2: the gradient reaching pre is (dy·W2ᵀ)·gelu_tanh_grad(pre), one GEMM with
        // cuBLASLt's DGELU epilogue (pre its auxiliary matrix). Gradients of W1 and b1 against the CPU's.
        var d = Cuda();
        var backend = (CudaBackend)Backends.For(d);
        double tol = dt == DType.Float32 ? 1e-4 : 3e-2;
        var x = Tensor.RandomNormal([4, 9, 32], 41, dtype: dt); var w1 = Tensor.RandomNormal([32, 48], 42, std: 0.2, dtype: dt);
        var b1 = Tensor.RandomNormal([48], 43, std: 0.1, dtype: dt); var w2 = Tensor.RandomNormal([48, 16], 44, std: 0.2, dtype: dt);
        var u = Tensor.RandomNormal([4, 9, 16], 45, dtype: dt);
        Tensor[] Grads(Tensor[] t) => Autograd.Grad(((t[0].MatMul(t[1]) + t[2]).Gelu(GeluApproximation.Tanh).MatMul(t[3]) * t[4]).Sum(), t[1], t[2]);
        Tensor[] inputs = [x, w1, b1, w2, u];
        var expected = Grads(inputs);
        long before = backend.DGeluGemms;
        var got = Grads(inputs.Select(t => t.To(d)).ToArray());
        Tensor.Eval(got);
        Assert.True(backend.DGeluGemms - before >= 1, "the backward should have used the DGELU epilogue");
        for (int i = 0; i < 2; i++)
        {
            var e = expected[i].ToArray<double>(); var a = got[i].ToArray<double>();
            double scale = e.Max(Math.Abs);
            for (int k = 0; k < e.Length; k++) Assert.True(Math.Abs(e[k] - a[k]) <= tol * scale, $"{dt} gradient {i}[{k}]: cpu {e[k]} gpu {a[k]}");
        }
    }

    [Fact]
    public void FusedChainIsOneKernel()
    {
        var d = Cuda();
        var x = Tensor.RandomNormal([1000, 37], 4);
        Tensor Chain(Tensor t) { var y = t; for (int i = 0; i < 10; i++) y = (y * 0.9 + 0.1).Tanh(); return y; }
        var gpuX = x.To(d).Eval();
        var backend = (CudaBackend)Backends.For(d);
        long before = backend.Launches;
        var y = Chain(gpuX).Eval();
        Assert.Equal(1, backend.Launches - before);
        Close(Chain(x), y, 1e-5, "fused chain");
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void MatMulPlainBatchedBroadcastAndTransposed(DType dt)
    {
        var a = Tensor.RandomNormal([65, 33], 1, dtype: dt); var b = Tensor.RandomNormal([33, 129], 2, dtype: dt);
        Same(x => x[0].MatMul(x[1]), [a, b], "2-D", 1e-4);
        var ba = Tensor.RandomNormal([3, 2, 17, 9], 3, dtype: dt); var bb = Tensor.RandomNormal([2, 9, 5], 4, dtype: dt);
        Same(x => x[0].MatMul(x[1]), [ba, bb], "batched with broadcast", 1e-4);
        Same(x => x[0].T.MatMul(x[1].T), [b, a], "transposed operands", 1e-4);
        // One weight for all batches (the rows fold into one GEMM), stored transposed as Linear does (x·Wᵀ),
        // and broadcast with a leading 1; a transposed left operand (x.T·g, a weight gradient).
        var x3 = Tensor.RandomNormal([4, 7, 33], 5, dtype: dt); var w = Tensor.RandomNormal([20, 33], 6, dtype: dt);
        Same(x => x[0].MatMul(x[1].T), [x3, w], "batch folded, transposed weight", 1e-4);
        Same(x => x[0].MatMul(x[1].T.Reshape(1, 33, 20)), [x3, w], "weight with a leading 1", 1e-4);
        var g = Tensor.RandomNormal([65, 20], 7, dtype: dt);
        Same(x => x[0].T.MatMul(x[1]), [a, g], "transposed left operand", 1e-4);
        // Views at odd element offsets: pointers only 4-byte aligned (cuBLASLt must be told, it assumes 256).
        var big = Tensor.RandomNormal([70, 33], 8, dtype: dt);
        Same(x => x[0].Slice(0, 1, 66).MatMul(x[1]), [big, b], "offset rows", 1e-4);
        Same(x => x[0].MatMul(x[1].Slice(0, 3, 23).T), [x3, big], "offset transposed weight", 1e-4);
    }

    [Fact]
    public void LoraLayerWithAndWithoutBiasMatchesTheCpu()
    {
        // x·W + s·(x·A)·B (+ bias): on the GPU two GEMMs accumulate into one output (alpha = s, beta = 1) and the
        // bias rides the first GEMM's epilogue; both the HF layout (x·Wᵀ) and [in, out] weights.
        var x = Tensor.RandomNormal([2, 9, 48], 1); var w = Tensor.RandomNormal([48, 40], 2, std: 0.2);
        var a = Tensor.RandomNormal([48, 8], 3, std: 0.2); var b = Tensor.RandomNormal([8, 40], 4, std: 0.2); var bias = Tensor.RandomNormal([40], 5);
        var wt = Tensor.RandomNormal([40, 48], 6, std: 0.2); var at = Tensor.RandomNormal([8, 48], 7, std: 0.2); var bt = Tensor.RandomNormal([40, 8], 8, std: 0.2);
        var mask = Tensor.FromArray(Enumerable.Range(0, 2 * 9 * 48).Select(i => i % 5 == 0 ? 0f : 1.25f).ToArray(), [2, 9, 48]);
        for (int run = 0; run < 3; run++)   // the second and third runs replay a captured graph
        {
            Same(t => t[0].MatMul(t[1]) + t[0].MatMul(t[2]).MatMul(t[3]) * 2.0, [x, w, a, b], "lora", 1e-4);
            Same(t => t[0].MatMul(t[1]) + t[0].MatMul(t[2]).MatMul(t[3]) * 0.5 + t[4], [x, w, a, b, bias], "lora + bias", 1e-4);
            Same(t => t[0].MatMul(t[1].T) + t[0].MatMul(t[2].T).MatMul(t[3].T) * 2.0, [x, wt, at, bt], "lora, HF layout", 1e-4);
            // Dropout on the branch (h = x·mask, the op's own input) with a bias.
            Same(t => t[0].MatMul(t[1]) + (t[0] * t[5]).MatMul(t[2]).MatMul(t[3]) * 2.0 + t[4], [x, w, a, b, bias, mask], "lora, dropout branch + bias", 1e-4);
        }
    }

    [Theory]
    [InlineData(DType.BFloat16)]
    [InlineData(DType.Float16)]
    public void HalfPrecisionRunsOnTheGpuLikeTheCpu(DType dt)
    {
        // bf16/fp16 values are stored as 16 bits and computed in fp32 on both sides (rounded once per kernel on
        // the GPU, per op on the CPU): 2e-2 relative. Casts round to nearest even on both: bit-exact.
        const double tol = 2e-2;
        var f = Tensor.RandomNormal([37, 64], 1, std: 3);
        Assert.Equal(f.Cast(dt).ToArray<double>(), f.To(Cuda()).Cast(dt).ToArray<double>());
        Assert.Equal(f.Cast(dt).Cast(DType.Float32).ToArray<float>(), f.Cast(dt).To(Cuda()).Cast(DType.Float32).ToArray<float>());
        var a = Tensor.RandomNormal([37, 64], 2, dtype: dt); var b = Tensor.RandomNormal([37, 64], 3, dtype: dt);
        Same(x => (x[0] * x[1] + 0.5).Tanh() - x[1].Exp() * 0.25, [a, b], "fused elementwise", tol);
        Same(x => x[0].Slice(0, 1, 36) + x[1].Slice(0, 0, 35), [a, b], "offset views (scalar path)", tol);
        Same(x => x[0].Sum([1]), [a], "sum", tol);
        Same(x => x[0].Mean([0]), [a], "mean", tol);
        var w = Tensor.RandomNormal([24, 64], 4, std: 0.2, dtype: dt); var x3 = Tensor.RandomNormal([3, 5, 64], 5, dtype: dt);
        Same(x => x[0].MatMul(x[1].T), [a, w], "matmul, transposed weight", tol);
        Same(x => x[0].MatMul(x[1].T), [x3, w], "matmul, batch folded", tol);
        // The hand-written row kernels' bf16 and fp16 forms (vector and scalar paths: 64 and 63 columns).
        var g = Tensor.RandomNormal([64], 6, mean: 1, std: 0.1, dtype: dt); var bias = Tensor.RandomNormal([64], 7, std: 0.1, dtype: dt);
        Same(x => x[0].Softmax(-1), [a], "softmax", tol);
        Same(x => x[0].Slice(1, 0, 63).LogSoftmax(-1), [a], "log_softmax, odd row", tol);
        Same(x => Ops.RmsNorm(x[0], x[1], 1e-6), [a, g], "rmsnorm", tol);
        Same(x => Ops.LayerNorm(x[0], x[1], x[2], 1e-5), [a, g, bias], "layernorm", tol);
        Same(x => x[0].Reshape(1, 37, 2, 32).Permute(0, 2, 1, 3).Rope(10000, interleaved: false), [a], "rope", tol);
        Same(x => x[0].Max([1]), [a], "max", tol);
        Same(x => x[0].LogSumExp([1]), [a], "logsumexp", tol);
        var ids = Tensor.FromArray(new long[] { 3, 0, 36, 3 }, [4]);
        Same(x => x[0].IndexSelect(0, x[1]), [a, ids], "index_select rows (embedding)", 0);
        Same(x => x[0].IndexSelect(1, x[1]), [a, ids], "index_select columns", 0);
        // index_add / scatter_add in bf16 and fp16 (a compare-and-swap on the word around each element), repeated
        // index 3 included: sums of two rows, rounded once per add on both sides.
        var src = Tensor.RandomNormal([4, 64], 8, dtype: dt);
        Same(x => Ops.IndexAdd(x[0], 0, x[1], x[2]), [a, ids, src], "index_add rows, a repeated index", tol);
        Same(x => Autograd.Grad((x[0].IndexSelect(0, x[1]) * x[2]).Sum(), x[0])[0], [a, ids, src], "embedding gradient (scatter-add)", tol);
    }

    [Theory]
    [InlineData(DType.BFloat16)]
    [InlineData(DType.Float16)]
    public void HalfPrecisionGradientsOfTheHandWrittenKernelsMatchTheCpu(DType dt)
    {
        // The backward kernels in bf16/fp16 (fp32 math, fp32 partial sums and attention accumulators, rounded once):
        // RMSNorm/LayerNorm (packed dx|dw|db), softmax/log-softmax, cross-entropy (ignore_index, smoothing),
        // RoPE and causal GQA attention. 2e-2 relative (+2e-2 absolute for sums that cancel).
        const double tol = 2e-2;
        var d = Cuda();
        void Grads(Func<Tensor[], Tensor> loss, Tensor[] inputs, string what)
        {
            var cpu = Autograd.Grad(loss(inputs), inputs);
            var gi = inputs.Select(t => t.To(d)).ToArray();
            var gpu = Autograd.Grad(loss(gi), gi);
            for (int i = 0; i < inputs.Length; i++)
            {
                Assert.Equal(dt, gpu[i].DType);
                Close(cpu[i], gpu[i], tol, $"{what}: grad {i}");
            }
        }
        var x = Tensor.RandomNormal([24, 64], 1, dtype: dt); var up = Tensor.RandomNormal([24, 64], 2, dtype: dt);
        var w = Tensor.RandomNormal([64], 3, mean: 1, std: 0.1, dtype: dt); var b = Tensor.RandomNormal([64], 4, std: 0.1, dtype: dt);
        Grads(t => (Ops.RmsNorm(t[0], t[1], 1e-6) * up.To(t[0].Device)).Sum(), [x, w], "rmsnorm");
        Grads(t => (Ops.LayerNorm(t[0], t[1], t[2], 1e-5) * up.To(t[0].Device)).Sum(), [x, w, b], "layernorm");
        Grads(t => (t[0].Softmax(-1) * up.To(t[0].Device)).Sum(), [x], "softmax");
        Grads(t => (t[0].LogSoftmax(-1) * up.To(t[0].Device)).Sum(), [x], "log_softmax");
        var targets = Tensor.FromArray(Enumerable.Range(0, 24).Select(i => i % 5 == 0 ? -100L : i * 7 % 64).ToArray(), [24]);
        Grads(t => Ops.CrossEntropy(t[0], targets.To(t[0].Device), labelSmoothing: 0.1), [x], "cross_entropy");
        var seq = Tensor.RandomNormal([1, 2, 12, 32], 5, dtype: dt); var seqUp = Tensor.RandomNormal([1, 2, 12, 32], 6, dtype: dt);
        Grads(t => (t[0].Rope(10000) * seqUp.To(t[0].Device)).Sum(), [seq], "rope");
        // Grouped-query attention: 4 query heads over 2 kv heads (group axis of size 1 on k, v), causal, head dim 32.
        var q = Tensor.RandomNormal([2, 2, 2, 12, 32], 7, dtype: dt); var k = Tensor.RandomNormal([2, 2, 1, 12, 32], 8, dtype: dt);
        var v = Tensor.RandomNormal([2, 2, 1, 12, 32], 9, dtype: dt); var aUp = Tensor.RandomNormal([2, 2, 2, 12, 32], 10, dtype: dt);
        Grads(t => (Ops.ScaledDotProductAttention(t[0], t[1], t[2], causal: true) * aUp.To(t[0].Device)).Sum(), [q, k, v], "attention");
    }

    [Fact]
    public void AttentionAndRopeReadTheirCountAndOffsetOnTheDevice()
    {
        // A KV cache with spare capacity: 16 slots, the first `valid` in use; the count and the position are device
        // scalars the kernels read (no host read), in int32 and int64. A count the cache cannot hold is reported by
        // the next read, as the CPU reports it at once.
        var d = Cuda();
        var q = Tensor.RandomNormal([1, 2, 3, 16], 1); var k = Tensor.RandomNormal([1, 2, 16, 16], 2); var v = Tensor.RandomNormal([1, 2, 16, 16], 3);
        foreach (var valid in new[] { Tensor.FromArray(new[] { 7 }, []), Tensor.FromArray(new long[] { 16 }, []), Tensor.FromArray(new long[] { 3 }, []) })
        {
            Same(t => Ops.ScaledDotProductAttention(t[0], t[1], t[2], causal: true, validKeys: t[3]), [q, k, v, valid], $"attention, {valid.ToArray<long>()[0]} valid keys");
            Same(t => Ops.ScaledDotProductAttention(t[0], t[1], t[2], causal: false, validKeys: t[3]), [q, k, v, valid], "attention, not causal");
            Same(t => t[0].Rope(t[1], 10000), [q, valid], "rope at a device position");
        }
        var bad = Tensor.FromArray(new long[] { 17 }, []).To(d);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ops.ScaledDotProductAttention(q.To(d), k.To(d), v.To(d), causal: true, validKeys: bad).ToArray<float>());
        Assert.Contains("17 valid keys", e.Message);
        Assert.Contains("16 key slots", e.Message);
        Same(t => Ops.ScaledDotProductAttention(t[0], t[1], t[2], causal: true, validKeys: t[3]), [q, k, v, Tensor.FromArray(new[] { 5 }, [])], "after the error was reported");
    }

    [Fact]
    public void Tf32IsOptInLosesAboutTenBitsAndRecapturesWhenToggled()
    {
        // Off (the default): fp32 GEMMs agree with the CPU to 1e-5. On: TF32 inputs (10-bit mantissa) give errors of
        // ~1e-3 relative to the row's scale — visible (so TF32 really ran) but bounded. A captured plan is captured
        // again when the setting changes (its GEMMs' compute type is baked in) — with room for one graph, so the
        // re-capture also runs the eviction that once dropped the graph it had just captured.
        var d = Cuda();
        var backend = (CudaBackend)Backends.For(d);
        int savedMax = CudaBackend.MaxGraphs;
        var a = Tensor.RandomNormal([128, 512], 1); var b = Tensor.RandomNormal([512, 96], 2);
        var expected = a.To(Device.Cpu).MatMul(b).ToArray<double>();
        double scale = Math.Sqrt(512);   // a product's typical size
        double MaxError() { var got = (a.To(d).MatMul(b.To(d)) * 1.0).ToArray<double>(); return expected.Zip(got, (e, g) => Math.Abs(e - g)).Max() / scale; }
        Assert.False(Settings.AllowTf32, "KILN_TF32 must not be set for this test");
        try
        {
            for (int i = 0; i < 3; i++) Assert.True(MaxError() < 1e-5, "fp32 GEMM");
            long captures0 = backend.Captures;
            CudaBackend.MaxGraphs = 1;
            Settings.AllowTf32 = true;
            var errors = Enumerable.Range(0, 3).Select(_ => MaxError()).ToArray();
            Console.WriteLine($"[tf32] max |error| / sqrt(k): {string.Join(", ", errors.Select(e => e.ToString("E2")))}");
            Assert.All(errors, e => Assert.InRange(e, 1e-5, 1e-2));
            Assert.True(backend.Captures - captures0 >= 1, "the plan should be captured again under TF32");
        }
        finally { Settings.AllowTf32 = false; CudaBackend.MaxGraphs = savedMax; }
        Assert.True(MaxError() < 1e-5, "fp32 again once TF32 is off");
    }

    [Fact]
    public void ADenseCopyAboveTheGeneratedKernelsRankInsideACapturedPlan()
    {
        // index_add starts from a dense copy of its base; inside a plan being captured that copy is a generated
        // kernel (limited to CudaCodegen.MaxRank axes), not a memcpy: a dense copy of any rank runs as one flat copy.
        var d = Cuda();
        var backend = (CudaBackend)Backends.For(d);
        int[] shape = [3, 1, 2, 1, 2, 1, 2, 1, 2];   // rank 9
        long captures0 = backend.Captures;
        for (int round = 0; round < 3; round++)
        {
            var x = Tensor.RandomNormal(shape, 700 + round);
            var src = Tensor.RandomNormal([2, 1, 2, 1, 2, 1, 2, 1, 2], 710 + round);
            var index = Tensor.FromArray(new long[] { 2, round % 3 });
            Same(t => Ops.IndexAdd(t[0] * 2, 0, t[1], t[2]), [x, index, src], $"rank-9 index_add, round {round}");
        }
        Assert.True(backend.Captures - captures0 >= 1, "the repeated plan should have been captured");
    }

    [Fact]
    public void ComparisonsAndWhereIncludingNaNAndReluGradient()
    {
        var a = Tensor.FromArray(new[] { 1f, -2, float.NaN, 3, 0, -0f, 5 }); var b = Tensor.FromArray(new[] { 1f, 2, 1, float.NaN, -0f, 0, 4 });
        var d = Cuda();
        foreach (var (name, f) in new (string, Func<Tensor, Tensor, Tensor>)[] { ("eq", Ops.Eq), ("ne", Ops.Ne), ("lt", (p, q) => p < q), ("le", Ops.Le), ("gt", (p, q) => p > q), ("ge", Ops.Ge) })
            Assert.Equal(f(a, b).ToArray<bool>(), f(a.To(d), b.To(d)).ToArray<bool>());
        var x = Tensor.RandomNormal([9, 11], 1); var y = Tensor.RandomNormal([9, 11], 2);
        Same(t => Ops.Where(t[0] > t[1], t[0], t[1] * 2), [x, y], "where");
        Same(t => Autograd.Grad((t[0].Relu() * t[1]).Sum(), t[0])[0], [x, y], "relu gradient (a where)");
    }

    [Fact]
    public void ConcatPadAndTriangle()
    {
        var a = Tensor.RandomNormal([2, 3, 5], 1); var b = Tensor.RandomNormal([2, 4, 5], 2); var c = Tensor.RandomNormal([2, 1, 5], 3);
        Same(t => Ops.Concat([t[0], t[1], t[2]], axis: 1), [a, b, c], "concat middle axis");
        Same(t => Ops.Concat([t[0].Slice(2, 1, 4), t[0]], axis: 2), [a], "concat of a strided view, last axis");
        var s = Tensor.RandomNormal([3, 7, 6], 4);
        Same(t => t[0].Pad([0, 2, 1], [1, 0, 3], -1.5), [s], "pad with a value");
        foreach (var (lower, diag) in new[] { (true, 0), (true, 2), (false, -1), (false, 3) })
            Same(t => t[0].Triangle(lower, diag, double.NegativeInfinity).Exp(), [s], $"triangle lower={lower} diagonal={diag}");
        Same(t => t[0].Permute(0, 2, 1).Triangle(true, 1, 0.5), [s], "triangle of a permuted view");
    }

    [Fact]
    public void Reductions()
    {
        var x = Tensor.RandomNormal([6, 50, 9], 5);
        Same(t => t[0].Sum(), [x], "sum all", 1e-4);
        Same(t => t[0].Mean([1]), [x], "mean axis 1", 1e-5);
        Same(t => t[0].Max([0, 2], keepDim: true), [x], "max axes 0,2");
        Same(t => t[0].T.Sum([-1]), [x.Reshape(6, 450)], "sum of a transposed view", 1e-4);
    }

    [Fact]
    public void GradientsOfATanhMlpMatchTheCpu()
    {
        var d = Cuda();
        var x = Tensor.RandomNormal([32, 16], 1); var w1 = Tensor.RandomNormal([16, 24], 2, std: 0.3); var w2 = Tensor.RandomNormal([24, 4], 3, std: 0.3);
        Tensor[] Grads(Tensor[] p) => Autograd.Grad((p[0].MatMul(p[1]).Tanh().MatMul(p[2]) - 0.5).Square().Mean(), p[1], p[2]);
        var cpu = Grads([x, w1, w2]);
        var gpu = Grads([x.To(d), w1.To(d), w2.To(d)]);
        for (int i = 0; i < 2; i++) Close(cpu[i], gpu[i], 1e-4, $"grad {i}");
    }

    [Fact]
    public void SameStructureNewDataReusesThePlanAndGivesNewValues()
    {
        var d = Cuda();
        for (int s = 0; s < 3; s++)
        {
            var a = Tensor.RandomNormal([40, 30], 10 + s); var b = Tensor.RandomNormal([30, 20], 20 + s);
            var expected = (a.MatMul(b) + 1).Tanh().ToArray<float>();
            var got = (a.To(d).MatMul(b.To(d)) + 1).Tanh().ToArray<float>();
            for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(expected[i] - got[i]) < 1e-5, $"step {s} [{i}]");
        }
    }

    [Fact]
    public void VectorizedElementwiseHandlesTailsScalarsAndMisalignedViews()
    {
        // 1003 = 250 groups of four + a tail of 3; the slice at offset 1 is not 16-byte aligned (scalar path),
        // the one at offset 4 is (vector path over a view).
        var a = Tensor.RandomNormal([1003], 1); var b = Tensor.RandomNormal([1003], 2); var c = Tensor.RandomNormal([1030], 3);
        Same(x => (x[0] * x[1] + 0.5).Tanh(), [a, b], "dense vec4 with tail");
        Same(x => x[0].Slice(0, 1, 1004) * 2 - x[1], [c, a], "misaligned view");
        Same(x => x[0].Slice(0, 4, 1007).Exp() + x[1], [c, a], "aligned view");
        Same(x => x[0].Cast(DType.Int32).Cast(DType.Float32), [c], "4-byte casts");
    }

    [Fact]
    public void MatMulEpiloguesMatchTheCpu()
    {
        // Bias, ReLU and tanh-GELU ride cuBLASLt's epilogue; erf-GELU and SiLU a generated kernel after the GEMM.
        var x = Tensor.RandomNormal([3, 7, 40], 1); var w = Tensor.RandomNormal([40, 24], 2, std: 0.3); var b = Tensor.RandomNormal([24], 3);
        Same(t => t[0].MatMul(t[1]) + t[2], [x, w, b], "bias");
        Same(t => (t[0].MatMul(t[1]) + t[2]).Relu(), [x, w, b], "bias + relu");
        Same(t => t[0].MatMul(t[1]).Relu(), [x, w], "relu");
        Same(t => (t[0].MatMul(t[1]) + t[2]).Gelu(GeluApproximation.Tanh), [x, w, b], "bias + gelu tanh", 1e-4);
        Same(t => t[0].MatMul(t[1]).Gelu(GeluApproximation.Tanh), [x, w], "gelu tanh", 1e-4);
        Same(t => (t[0].MatMul(t[1]) + t[2]).Gelu(), [x, w, b], "bias + gelu erf");
        Same(t => (t[0].MatMul(t[1]) + t[2]).Silu(), [x, w, b], "bias + silu");
        Assert.Equal(CublasLtEpilogue.ReluBias, CudaBackend.EpilogueOf(true, "relu"));
        Assert.Null(CudaBackend.EpilogueOf(true, "silu"));
    }

    [Fact]
    public void LongReductionsOfEveryKindMatchTheCpu()
    {
        // Long enough to be split (SplitReduction): over the contiguous axis (blocks per output and part), over a
        // leading axis (threads per output, parts along y), everything at once (1024 parts), and a permuted view;
        // with infinities and a NaN where each kind must see them.
        var x = Tensor.RandomNormal([6, 3000, 40], 21);
        var rows = Tensor.RandomNormal([12, 20000], 22);
        foreach (var (name, f, tol) in new (string, Func<Tensor, Tensor>, double)[]
        {
            ("sum", t => t.Sum([1]), 1e-5), ("mean all", t => t.Mean(), 1e-5), ("max", t => t.Max([0, 1]), 0), ("min", t => t.Min([1]), 0),
            ("argmax", t => t.ArgMax(1).Cast(DType.Float32), 0), ("logsumexp", t => t.LogSumExp([1]), 1e-5),
            ("var", t => t.Var([0, 1], correction: 1), 1e-5), ("sum of a permuted view", t => t.Permute(2, 0, 1).Sum([2]), 1e-5),
            // leading axes with the outputs one run of a multiple of 4 (four outputs per thread, 16-byte loads), a
            // short one (6 rows), and views that are not 16-byte aligned or not a multiple of 4 wide (the scalar form)
            ("sum over leading axes", t => t.Sum([0, 1]), 1e-5), ("argmax over the first axis", t => t.ArgMax(0).Cast(DType.Float32), 0),
            ("min over the first axis", t => t.Min([0]), 0), ("sum of an offset view", t => t.Slice(2, 1, 37).Sum([0, 1]), 1e-5),
            ("sum of a 39-wide view", t => t.Slice(2, 0, 39).Sum([0, 1]), 1e-5),
        })
            Same(t => f(t[0]), [x], name + " (6,3000,40)", tol);
        // 20000-term sums cancel (values ~N(0,1), sums ~1): the CPU's fp32 sum is off by ~3e-5 there, so the GPU's
        // (accumulated in double) is held to the fp64 sum instead, at fp32 rounding.
        var rowSums = rows.To(Cuda()).Sum([1]).ToArray<float>();
        var exact = rows.Cast(DType.Float64).Sum([1]).ToArray<double>();
        for (int i = 0; i < exact.Length; i++) Assert.True(Math.Abs(rowSums[i] - exact[i]) <= 1e-6 * (1 + Math.Abs(exact[i])), $"row sum {i}: gpu {rowSums[i]} fp64 {exact[i]}");
        Same(t => t[0].ArgMax(1).Cast(DType.Float32), [rows], "row argmax (12,20000)", 0);
        Same(t => t[0].LogSumExp([1]), [rows], "row logsumexp (12,20000)", 1e-5);
        Same(t => t[0].Var([1], correction: 0), [rows], "row var (12,20000)", 1e-5);
        // Special values: -inf rows, a +inf, a NaN, repeated maxima (first index wins).
        var v = new float[4 * 5000];
        for (int i = 0; i < v.Length; i++) v[i] = (i % 97) * 0.01f;
        for (int j = 0; j < 5000; j++) v[j] = float.NegativeInfinity;   // row 0 all -inf
        v[5000 + 4321] = float.PositiveInfinity;                        // row 1 has +inf
        v[10000 + 17] = float.NaN;                                      // row 2 has a NaN
        var sp = Tensor.FromArray(v, [4, 5000]);
        Same(t => t[0].LogSumExp([1]), [sp], "logsumexp special rows", 1e-5);
        Same(t => t[0].Max([1]), [sp], "max special rows", 0);
        Same(t => t[0].ArgMax(1).Cast(DType.Float32), [sp], "argmax special rows (ties: first index)", 0);
    }

    [Fact]
    public void NewReductionsAndIndexOpsMatchTheCpu()
    {
        var x = Tensor.RandomNormal([5, 40, 7], 11);
        Same(t => t[0].Min([1]), [x], "min axis 1");
        Same(t => t[0].ArgMax(-1).Cast(DType.Float32), [x], "argmax last axis");
        Same(t => t[0].Permute(2, 0, 1).ArgMax(1, keepDim: true).Cast(DType.Float32), [x], "argmax of a permuted view");
        Same(t => t[0].LogSumExp([0, 2]), [x], "logsumexp axes 0,2");
        Same(t => t[0].Var([1], correction: 1), [x], "var axis 1");
        Same(t => t[0].Var(null, keepDim: true, correction: 0), [x], "var all");
        var idx = Tensor.FromArray(Enumerable.Range(0, 5 * 3 * 7).Select(i => (long)(i * 17 % 40)).ToArray(), [5, 3, 7]);
        Same(t => Ops.Gather(t[0], 1, t[1]), [x, idx], "gather axis 1");
        var src = Tensor.RandomNormal([5, 3, 7], 12);
        Same(t => Ops.ScatterAdd(t[0], 1, t[1], t[2]), [x, idx, src], "scatter_add axis 1");
        var rows = Tensor.FromArray(new[] { 3, 3, 0, 39 }, [1, 4, 1]).Expand(5, 4, 7);   // int32, repeated, broadcast view
        Same(t => Ops.Gather(t[0], 1, t[1]), [x, rows], "gather with int32 broadcast indices");
    }

    [Fact]
    public void AnOutOfRangeGatherIndexIsReportedByTheNextReadAndThenCleared()
    {
        var d = Cuda();
        var x = Tensor.RandomNormal([4, 6], 3).To(d);
        var bad = Tensor.FromArray(new long[] { 0, 9, 1 }, [1, 3]).To(d);
        var e = Assert.Throws<IndexOutOfRangeException>(() => Ops.Gather(x, 1, bad).ToArray<float>());
        Assert.Contains("gather", e.Message);
        Assert.Contains("index 9", e.Message);
        Assert.Contains("size 6", e.Message);
        var good = Tensor.FromArray(new long[] { 0, 5, 1 }, [1, 3]).To(d);
        Assert.Equal(3, Ops.Gather(x, 1, good).ToArray<float>().Length);   // the error was reported once
    }

    [Fact]
    public void UnsupportedOpNamesItselfAndTheDevice()
    {
        var d = Cuda();
        var e = Assert.Throws<NotSupportedException>(() => Tensor.RandomNormal([3, 4], 1).To(d).Cast(DType.Int64).Sum().Eval());
        Assert.Contains("sum", e.Message);
        Assert.Contains("cuda:0", e.Message);
    }
}

[Collection("gpu")]
public class CudaGraphTests
{
    [Fact]
    public void APlanIsCapturedOnceAndReplayedWithNewData()
    {
        Gpu.Context();
        KilnCuda.Register();
        var d = Device.Cuda(0);
        var backend = (CudaBackend)Backends.For(d);
        var w = Tensor.RandomNormal([64, 48], 1).To(d).Eval();   // the same weight every step: staged once
        long captures0 = backend.Captures, replays0 = backend.Replays;
        for (int step = 0; step < 5; step++)
        {
            var xCpu = Tensor.RandomNormal([32, 64], 100 + step);
            var expected = ((xCpu.MatMul(w.To(Device.Cpu)) * 0.5).Tanh().Sum([0]) / 3).ToArray<float>();
            var got = ((xCpu.To(d).MatMul(w) * 0.5).Tanh().Sum([0]) / 3).ToArray<float>();
            for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(expected[i] - got[i]) < 1e-4, $"step {step} [{i}]: {expected[i]} vs {got[i]}");
        }
        Assert.Equal(1, backend.Captures - captures0);   // captured on the second run, never again
        Assert.True(backend.Replays - replays0 >= 4, $"{backend.Replays - replays0} replays");
    }

    [Fact]
    public void ReplayedOutputsAreFreshValuesNotTheArena()
    {
        Gpu.Context();
        KilnCuda.Register();
        var d = Device.Cuda(0);
        var results = new List<Tensor>();
        for (int step = 0; step < 4; step++) results.Add((Tensor.FromArray(new[] { step, step + 1f }, device: d) * 2).Eval());
        for (int step = 0; step < 4; step++) Assert.Equal(new[] { 2f * step, 2f * step + 2 }, results[step].ToArray<float>());
    }

    private static (Device, CudaBackend) Backend()
    {
        Gpu.Context();
        KilnCuda.Register();
        var d = Device.Cuda(0);
        return (d, (CudaBackend)Backends.For(d));
    }

    // softmax (a hand-written kernel) then RMSNorm with a weight then a fused elementwise tail: only our kernels
    // touch x and the result, so replays read x in place and write a fresh buffer each time.
    private static Tensor Layer(Tensor x, Tensor w) => (Ops.RmsNorm(x.Softmax(-1) * 3, w) * 0.5 + 1).Tanh();

    [Fact]
    public void ReplaysReadInputsInPlaceAndHandOutFreshOutputsThatLaterReplaysDoNotTouch()
    {
        var (d, backend) = Backend();
        var w = Tensor.RandomNormal([96], 7).To(d).Eval();
        var inputs = Enumerable.Range(0, 6).Select(s => Tensor.RandomNormal([12, 96], 300 + s)).ToArray();
        long bound0 = backend.InputsBound, handed0 = backend.OutputsHandedOut, copied0 = backend.OutputsCopied, captures0 = backend.Captures;
        // Every result is kept until the end: a replay writing into an earlier result's memory would show here.
        var results = inputs.Select(x => Layer(x.To(d).Eval(), w).Eval()).ToArray();
        for (int s = 0; s < inputs.Length; s++)
        {
            var expected = Layer(inputs[s], w.To(Device.Cpu)).ToArray<float>();
            var got = results[s].ToArray<float>();
            for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(expected[i] - got[i]) < 1e-5, $"step {s} [{i}]: {expected[i]} vs {got[i]}");
        }
        Assert.Equal(1, backend.Captures - captures0);
        Assert.True(backend.InputsBound - bound0 >= 4, $"inputs bound in place: {backend.InputsBound - bound0}");
        Assert.True(backend.OutputsHandedOut - handed0 >= 5, $"outputs handed out: {backend.OutputsHandedOut - handed0}");
        Assert.Equal(0, backend.OutputsCopied - copied0);
    }

    [Fact]
    public void InputsAndOutputsCuBlasSeesAreStagedAndCopiedAndStillRight()
    {
        var (d, backend) = Backend();
        var w = Tensor.RandomNormal([64, 32], 1).To(d).Eval();
        long staged0 = backend.InputsStaged, copied0 = backend.OutputsCopied;
        for (int s = 0; s < 5; s++)
        {
            var x = Tensor.RandomNormal([16, 64], 400 + s);
            var expected = x.MatMul(w.To(Device.Cpu)).ToArray<float>();   // the GEMM writes the output itself
            var got = x.To(d).Eval().MatMul(w).ToArray<float>();
            for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(expected[i] - got[i]) < 1e-4, $"step {s} [{i}]");
        }
        Assert.True(backend.InputsStaged - staged0 >= 4, $"staged: {backend.InputsStaged - staged0}");
        Assert.True(backend.OutputsCopied - copied0 >= 4, $"copied: {backend.OutputsCopied - copied0}");
    }

    [Fact]
    public void ManyStagedInputsAndCopiedOutputsInOneReplayAreBatchedAndRight()
    {
        // 200 products (more than one copy launch holds: 160) whose inputs cuBLASLt reads (staged) and whose outputs
        // it writes (copied out), the inputs contiguous views at unaligned offsets (the copy kernel's byte path).
        var (d, backend) = Backend();
        var big = Tensor.RandomNormal([200 * 27 + 1], 600).To(d).Eval();
        var w = Tensor.RandomNormal([9, 5], 5).To(d).Eval();
        for (int step = 0; step < 4; step++)
        {
            var fresh = (big * (step + 1)).Eval();
            // Realised contiguous views: element offsets 27·i (+1 for every third), so most are not 16-byte aligned.
            var odd = Enumerable.Range(0, 200).Select(i => fresh.Slice(0, 27 * i + (i % 3 == 0 ? 1 : 0), 27 * i + 27 + (i % 3 == 0 ? 1 : 0)).Reshape(3, 9).Eval()).ToArray();
            var outs = odd.Select(x => x.MatMul(w)).ToArray();
            Tensor.Eval(outs);
            var wc = w.To(Device.Cpu);
            for (int i = 0; i < outs.Length; i += 7)
            {
                var expected = odd[i].To(Device.Cpu).MatMul(wc).ToArray<float>(); var got = outs[i].ToArray<float>();
                for (int k = 0; k < got.Length; k++) Assert.True(Math.Abs(expected[k] - got[k]) < 1e-4, $"step {step}, product {i} [{k}]: {expected[k]} vs {got[k]}");
            }
        }
        Assert.True(backend.Replays > 0);
    }

    [Fact]
    public void WithRebindingOffReplaysStageAndCopyAndGiveTheSameValues()
    {
        var (d, backend) = Backend();
        var w = Tensor.RandomNormal([40], 8).To(d).Eval();
        var inputs = Enumerable.Range(0, 4).Select(s => Tensor.RandomNormal([5, 40], 500 + s)).ToArray();
        long bound0 = backend.InputsBound, handed0 = backend.OutputsHandedOut;
        CudaBackend.RebindEnabled = false;
        try
        {
            var results = inputs.Select(x => Layer(x.To(d).Eval(), w).Eval()).ToArray();
            for (int s = 0; s < inputs.Length; s++)
                Assert.Equal(Layer(inputs[s], w.To(Device.Cpu)).ToArray<float>(), results[s].ToArray<float>(), (a, b) => Math.Abs(a - b) < 1e-5);
        }
        finally { CudaBackend.RebindEnabled = true; }
        Assert.Equal(0, backend.InputsBound - bound0);
        Assert.Equal(0, backend.OutputsHandedOut - handed0);
    }

    [Fact]
    public void IndependentBranchesAreCapturedOnForkedStreamsAndGiveTheSameValues()
    {
        // Three GEMM branches from one x (q/k/v-like) and a joined result: the capture puts branches on side
        // streams (graph edges from events); with side streams off the same kernels run on one stream.
        var (d, backend) = Backend();
        var wq = Tensor.RandomNormal([64, 48], 1, std: 0.2).To(d).Eval(); var wk = Tensor.RandomNormal([64, 48], 2, std: 0.2).To(d).Eval();
        var wv = Tensor.RandomNormal([64, 48], 3, std: 0.2).To(d).Eval();
        static Tensor F(Tensor x, Tensor a, Tensor b, Tensor c) => (x.MatMul(a).Tanh() + x.MatMul(b).Exp() * 0.5) * x.MatMul(c).Softmax(-1) + (x * 2).Sum([1], keepDim: true);
        var cpu = new[] { wq, wk, wv }.Select(w => w.To(Device.Cpu).Eval()).ToArray();
        void Check(int rows)   // a new row count is a new plan, captured under the current setting
        {
            for (int s = 0; s < 4; s++)
            {
                var x = Tensor.RandomNormal([rows, 64], 700 + s);
                var expected = F(x, cpu[0], cpu[1], cpu[2]).ToArray<float>();
                var got = F(x.To(d), wq, wk, wv).ToArray<float>();
                for (int i = 0; i < expected.Length; i++)
                    Assert.True(Math.Abs(expected[i] - got[i]) <= 1e-4 * Math.Abs(expected[i]) + 1e-4, $"rows {rows} step {s} [{i}]: {expected[i]} vs {got[i]}");
            }
        }
        long forked0 = backend.ForkedNodes;
        Check(16);
        Assert.True(backend.ForkedNodes > forked0, "some branch should have been captured on a side stream");
        int saved = CudaBackend.SideStreams;
        CudaBackend.SideStreams = 0;
        try
        {
            long forked1 = backend.ForkedNodes;
            Check(17);
            Assert.Equal(forked1, backend.ForkedNodes);
        }
        finally { CudaBackend.SideStreams = saved; }
    }

    [Fact]
    public void MemoryStatsFollowTheAllocatorAndTheGraphs()
    {
        var (d, _) = Backend();
        var before = KilnCuda.MemoryStats();
        var x = Tensor.RandomNormal([1 << 20], 1).To(d).Eval();   // 4 MiB held
        for (int i = 0; i < 4; i++)   // captured on the second run; each result given back before the next replay
        {
            using var t = (x * 3 - 1).Exp();
            t.Eval();
        }
        var y = (x * 3 - 1).Exp().Eval();
        var held = KilnCuda.MemoryStats();
        Assert.True(held.InUseBytes >= before.InUseBytes + (4 << 20), $"in use {before.InUseBytes} -> {held.InUseBytes}");
        Assert.True(held.PeakReservedBytes >= held.ReservedBytes && held.ReservedBytes >= held.CachedBytes);
        Assert.True(held.Graphs >= 1 && held.GraphBytes >= (4 << 20), $"graphs {held.Graphs}, {held.GraphBytes} bytes");
        Assert.True(held.CacheHits > before.CacheHits, "replays should reuse cached blocks");
        GC.KeepAlive(x); GC.KeepAlive(y);
        KilnCuda.EmptyCache();
        Assert.Equal(0, KilnCuda.MemoryStats().CachedBytes);
    }

    [Fact]
    public void GraphsBuiltOnSixteenThreadsEvaluateCorrectlyOnOneDevice()
    {
        // Each thread builds its own lazy graphs (four structures shared between threads, new data every step) and
        // evaluates them on cuda:0 while the others do: uploads, captures, replays and downloads interleave.
        var (d, backend) = Backend();
        var w = Tensor.RandomNormal([32, 24], 1).To(d).Eval();
        var g = Tensor.RandomNormal([24], 2, mean: 1, std: 0.1).To(d).Eval();
        var wCpu = w.To(Device.Cpu).Eval(); var gCpu = g.To(Device.Cpu).Eval();
        static Tensor F(int kind, Tensor x, Tensor w, Tensor g) => kind switch
        {
            0 => (x * 2 + 1).Tanh(),
            1 => x.MatMul(w).Softmax(-1),
            2 => Ops.RmsNorm(x.MatMul(w), g) * 0.5,
            _ => (x.MatMul(w) + 0.25).Exp().Sum([1]),
        };
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long captures0 = backend.Captures;
        var threads = Enumerable.Range(0, 16).Select(t => new Thread(() =>
        {
            try
            {
                for (int step = 0; step < 6; step++)
                {
                    int kind = (t + step) % 4;
                    var x = Tensor.RandomNormal([8, 32], 1000 * t + step);
                    var expected = F(kind, x, wCpu, gCpu).ToArray<float>();
                    var got = F(kind, x.To(d), w, g).ToArray<float>();
                    for (int i = 0; i < got.Length; i++)
                        if (!(Math.Abs(expected[i] - got[i]) <= 1e-4 * Math.Abs(expected[i]) + 1e-4)) { failures.Enqueue($"thread {t} step {step} kind {kind} [{i}]: {expected[i]} vs {got[i]}"); break; }
                }
            }
            catch (Exception e) { failures.Enqueue($"thread {t}: {e.GetType().Name}: {e.Message}"); }
        })).ToList();
        threads.ForEach(th => th.Start());
        Assert.True(threads.All(th => th.Join(TimeSpan.FromSeconds(120))), "a thread did not finish within 2 minutes");
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(5)));
        Assert.True(backend.Captures - captures0 >= 1, "the repeated structures should have been captured");
    }

    [Fact]
    public void TheLeastRecentlyUsedGraphIsDroppedAboveTheLimitAndRecapturedWhenNeeded()
    {
        var (d, backend) = Backend();
        int saved = CudaBackend.MaxGraphs;
        CudaBackend.MaxGraphs = 2;
        try
        {
            long evictions0 = backend.Evictions, captures0 = backend.Captures;
            int[] sizes = [11, 13, 17];   // three plans, round robin: with room for two, each capture drops the oldest
            for (int round = 0; round < 4; round++)
                foreach (int n in sizes)
                {
                    var x = Tensor.RandomNormal([n], 600 + round * 10 + n);
                    var expected = (x * 1.5 - 0.25).Exp().ToArray<float>();
                    var got = (x.To(d) * 1.5 - 0.25).Exp().ToArray<float>();
                    for (int i = 0; i < n; i++) Assert.True(Math.Abs(expected[i] - got[i]) < 1e-5 * Math.Abs(expected[i]) + 1e-6, $"round {round} n {n} [{i}]");
                }
            Assert.True(backend.Evictions - evictions0 >= 2, $"evictions: {backend.Evictions - evictions0}");
            Assert.True(backend.Captures - captures0 >= 4, $"captures: {backend.Captures - captures0}");
        }
        finally { CudaBackend.MaxGraphs = saved; }
    }

}
