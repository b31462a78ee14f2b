// Runtime-compiled fused loops: random programs give the interpreter's values (its reference twin,
// KILN_DISABLE=codegen) and the unfused graph's (KILN_DISABLE=fusion) on odd sizes, broadcast, scalar and
// strided inputs in fp32 and fp64; a structure compiles once; many threads get bitwise the single-threaded values.
using CsCheck;
using Kiln.Cpu;
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.Tests.Cpu;

using Ops = Kiln.Ops;

[Collection(nameof(Kiln.Tests.Ops.KernelCountingCollection))]   // not in parallel: counts compilations
public class FusedCodegenTests
{
    // Arguments are kept where the ops are well conditioned, through extra steps that are fused too: exp, sin,
    // cos and pow see bounded values, sqrt, log, rsqrt and divisors values away from 0. Otherwise chains like
    // sin(exp(1/x)) or sqrt(tanh(relu(x))) turn last-ulp differences into arbitrary ones (TensorPrimitives'
    // fp32 tanh(0) is −6e−8 on some paths; its span tails use scalar math), and the comparison would test
    // conditioning instead of the compiled loop.
    private static readonly Func<Tensor, Tensor>[] Unary =
    [
        x => -x, x => x.Abs(), x => (x.Tanh() * 4).Exp(), x => (x.Abs() + 0.1).Log(), x => (x.Abs() + 0.1).Sqrt(),
        x => (x.Abs() + 0.1).Rsqrt(), x => (x.Tanh() * 4).Sin(), x => (x.Tanh() * 4).Cos(), x => x.Tanh(), x => x.Sigmoid(),
        x => x.Relu(), x => x.Square(), x => x.Silu(), x => x.Gelu(GeluApproximation.Tanh), x => x.Gelu(), x => x.Erf(),
        x => Tensor.Apply(Kiln.Graph.OpTable.GeluTanhGrad, null, x),
    ];

    private static readonly Func<Tensor, Tensor, Tensor>[] Binary =
    [
        (a, b) => a + b, (a, b) => a - b, (a, b) => a * b, (a, b) => a / (b.Abs() + 0.5), Ops.Maximum, Ops.Minimum,
        (a, b) => Ops.Pow(a.Sigmoid() + 0.5, b.Tanh() * 3),
    ];

    /// <summary>Output shapes with 1, 7, 1023, 1025 and 4099 elements.</summary>
    private static readonly int[][] Shapes = [[1, 1], [1, 7], [7, 1], [3, 341], [5, 205], [1, 4099]];

    /// <summary>Realised inputs of every layout the kernel reads: dense, row bias, column scale, transposed, scalar, expanded fill.</summary>
    private static Tensor[] Inputs(int[] s, DType dt, int seed)
    {
        int r = s[0], c = s[1];
        var t = new[]
        {
            Tensor.RandomNormal([r, c], seed, dtype: dt),
            Tensor.RandomNormal([r, c], seed + 1, dtype: dt),
            Tensor.RandomNormal([c], seed + 2, dtype: dt),
            Tensor.RandomNormal([r, 1], seed + 3, dtype: dt),
            Tensor.RandomNormal([c, r], seed + 4, dtype: dt).T,
            Tensor.RandomNormal([1], seed + 5, dtype: dt),
            Tensor.RandomNormal([r, 2 * c], seed + 6, dtype: dt).Slice(1, 0, 2 * c, 2),   // strided columns
            Tensor.Full([r, c], 0.75, dt),
        };
        Tensor.Eval(t);
        return t;
    }

    /// <summary>Program codes: even → unary op (code/2), odd → binary op with input (code/2 / 16) as the other operand.</summary>
    private static Tensor Build(int[] program, Tensor[] inputs)
    {
        var y = inputs[0];
        var live = new List<Tensor> { y };
        for (int j = 0; j < program.Length; j++)
        {
            int code = program[j];
            int op = code / 2;
            y = code % 2 == 0
                ? Unary[op % Unary.Length](y)
                : Binary[op % Binary.Length]((op / 16) % 3 == 0 ? y : live[op % live.Count], inputs[op % inputs.Length]);
            live.Add(y);
        }
        return y + live[live.Count / 2];   // a second use of an inner value (inside the group: used only here)
    }

    private static readonly Gen<(int Shape, bool F64, int[] Program)> GenCase =
        Gen.Select(Gen.Int[0, Shapes.Length - 1], Gen.Bool, Gen.Int[0, 4000].Array[2, 14]);

    private static double[] Evaluate(int[] program, Tensor[] inputs, bool? codegen, bool fuse)
    {
        var y = Build(program, inputs);
        FusedKernel.CodegenOverride.Value = codegen;
        try
        {
            var run = fuse ? GraphOptimizer.Optimize([y.Node]).Outputs : [y.Node];
            Evaluator.Evaluate(run, optimize: false);
            return DataReader.Read<double>(run[0].Value!);
        }
        finally { FusedKernel.CodegenOverride.Value = null; }
    }

    [Fact]
    public void CompiledEqualsInterpretedAndUnfusedOnRandomPrograms()
    {
        Assert.True(FusedCodegen.IsAvailable, "this machine compiles fused loops (Vector256, dynamic code)");
        GenCase.Sample(c =>
        {
            var dt = c.F64 ? DType.Float64 : DType.Float32;
            var inputs = Inputs(Shapes[c.Shape], dt, c.Program.Length);
            var compiled = Evaluate(c.Program, inputs, codegen: true, fuse: true);
            var interpreted = Evaluate(c.Program, inputs, codegen: false, fuse: true);
            var unfused = Evaluate(c.Program, inputs, codegen: null, fuse: false);
            double tol = c.F64 ? 1e-11 : 1e-5;
            string what = $"{dt.ShortName()} ({string.Join(",", Shapes[c.Shape])}) [{string.Join(",", c.Program)}]";
            Close.AssertAll(interpreted, compiled, tol, "compiled vs interpreted " + what);
            Close.AssertAll(unfused, compiled, tol, "compiled vs unfused " + what);
        }, iter: 200, threads: 1);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(1023)]
    [InlineData(1025)]
    [InlineData(4099)]
    public void ArithmeticChainsAgreeToTheUlp(int n)
    {
        foreach (var dt in new[] { DType.Float32, DType.Float64 })
        {
            var inputs = Inputs([1, n], dt, 9);
            // + − × ÷ max min neg relu square sqrt abs: no transcendental, so the compiled loop is exact.
            Tensor G(Tensor[] i) => Ops.Maximum((i[0] + i[2]) * i[3] - i[4] / (i[1].Abs() + 1), i[5]).Relu().Square()
                                    + Ops.Minimum(-i[6], i[7]).Abs().Sqrt();
            var a = G(inputs); var b = G(inputs);
            Assert.Equal(1, KernelCount.Of(() => a.Eval()));
            FusedKernel.CodegenOverride.Value = false;
            try { b.Eval(); } finally { FusedKernel.CodegenOverride.Value = null; }
            Assert.Equal(b.ToArray<double>(), a.ToArray<double>());
        }
    }

    [Fact]
    public void SigmoidExpTanhGeluMatchTheInterpreterClosely()
    {
        var x = Tensor.RandomNormal([4099], 3) * 6;
        x.Eval();
        foreach (var f in new Func<Tensor, Tensor>[] { t => (t * 0.5).Exp(), t => (t * 0.5).Tanh(), t => (t * 0.5).Sigmoid(), t => (t * 0.5).Silu(), t => (t * 0.5).Gelu(GeluApproximation.Tanh), t => (t + 10).Log() })
        {
            var a = f(x); var b = f(x);
            a.Eval();
            FusedKernel.CodegenOverride.Value = false;
            try { b.Eval(); } finally { FusedKernel.CodegenOverride.Value = null; }
            float[] av = a.ToArray<float>(), bv = b.ToArray<float>();
            for (int i = 0; i < av.Length; i++)
                Assert.True(float.IsNaN(av[i]) && float.IsNaN(bv[i]) || Math.Abs(av[i] - bv[i]) <= 2 * float.Epsilon + 2.5e-7 * Math.Abs(bv[i]), $"element {i}: {av[i]:R} vs {bv[i]:R}");
        }
    }

    [Fact]
    public void AStructureCompilesOnceAndPlanCacheHitsNeverCompile()
    {
        var x = Tensor.RandomNormal([3, 1000], 1);
        var w = Tensor.RandomNormal([1000], 2);
        x.Eval(); w.Eval();
        // A structure no other test builds: 12 steps in an unusual order.
        Tensor G(Tensor a) => ((((a * w).Cos() - w).Square().Sin() + a).Abs().Rsqrt() * a - w).Relu().Exp().Neg();
        long c0 = FusedCodegen.Compilations;
        G(x).Eval();
        Assert.Equal(1, FusedCodegen.Compilations - c0);
        G(x).Eval();                                                    // plan-cache hit
        G(Tensor.RandomNormal([3, 1000], 7)).Eval();                   // new data, same structure
        Assert.Equal(1, FusedCodegen.Compilations - c0);
        G(Tensor.RandomNormal([5, 1000], 7)).Eval();                   // new shape: new plan, same loop
        Assert.Equal(1, FusedCodegen.Compilations - c0);
        G(Tensor.RandomNormal([3, 1000], 8, dtype: DType.Float64)).Eval();   // another dtype compiles its own
        Assert.Equal(2, FusedCodegen.Compilations - c0);
        FusedKernel.CodegenOverride.Value = false;
        try { G(Tensor.RandomNormal([3, 1000], 9)).Eval(); } finally { FusedKernel.CodegenOverride.Value = null; }
        Assert.Equal(2, FusedCodegen.Compilations - c0);               // the interpreter compiles nothing
    }

    [Fact]
    public void SixteenThreadsGiveSingleThreadedBits()
    {
        const int threads = 16;
        var x = Tensor.RandomNormal([4, 1025], 1); var b = Tensor.RandomNormal([1025], 2); var s = Tensor.RandomNormal([4, 1], 3);
        Tensor.Eval(x, b, s);
        // Thread t builds one of 4 structures (identical across threads sharing t % 4) and a per-thread scale.
        Tensor G(int t) => (t % 4) switch
        {
            0 => ((x + b) * s).Silu().Tanh() * (t + 1),
            1 => ((x * b).Exp() - s).Sigmoid() / (t + 1),
            2 => (Ops.Maximum(x, b).Square() + s).Gelu(GeluApproximation.Tanh) - t,
            _ => ((x - s).Abs().Sqrt() * b).Cos() + t,
        };
        var expected = Enumerable.Range(0, threads).Select(t => G(t).ToArray<float>()).ToArray();
        for (int round = 0; round < 3; round++)
        {
            var got = new float[threads][];
            using var barrier = new Barrier(threads);
            var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
            var ts = Enumerable.Range(0, threads).Select(t => new Thread(() =>
            {
                try { barrier.SignalAndWait(); got[t] = G(t).ToArray<float>(); }
                catch (Exception e) { errors.Enqueue(e); }
            })).ToArray();
            foreach (var th in ts) th.Start();
            foreach (var th in ts) th.Join();
            Assert.Empty(errors);
            for (int t = 0; t < threads; t++)
                Assert.Equal(expected[t].Select(BitConverter.SingleToUInt32Bits), got[t].Select(BitConverter.SingleToUInt32Bits));
        }
    }

    [Fact]
    public void ProgramsTooLongToCompileAreInterpreted()
    {
        var x = Tensor.RandomNormal([100], 4);
        var y = x;
        for (int i = 0; i < FusedCodegen.MaxSteps; i++) y = (y * 0.999).Tanh();   // 2·MaxSteps steps
        long c0 = FusedCodegen.Compilations;
        Assert.Equal(1, KernelCount.Of(() => y.Eval()));
        Assert.Equal(0, FusedCodegen.Compilations - c0);
    }

    [Fact]
    public void OneProgramObjectKeepsALoopPerElementTypeAndScalarLayout()
    {
        // A cached plan's node keeps its program object, looked up by reference and cached hash on each run: switching
        // element type or which inputs are scalars must still find the right loop. exp(a·b) against a scalar loop.
        var program = new Kiln.Graph.FusedProgram([new(Kiln.Graph.OpTable.Mul, ~0, ~1), new(Kiln.Graph.OpTable.Exp, 0, 0)]);
        foreach (var (dt, scalarB) in new[] { (DType.Float32, false), (DType.Float32, true), (DType.Float64, false), (DType.Float64, true), (DType.Float32, false) })
        {
            var a = Tensor.RandomNormal([3, 37], 1, dtype: dt).Eval();
            var b = (scalarB ? Tensor.Full([1], 0.5, dt).Expand(3, 37) : Tensor.RandomNormal([3, 37], 2, dtype: dt)).Eval();
            var r = FusedKernel.Run([a.Node.Value!, b.Node.Value!], program, [3, 37], dt, into: null);
            var got = new Tensor(new Kiln.Graph.Node(Kiln.Graph.OpTable.Constant, [], null, [3, 37], dt, Device.Cpu, r)).ToArray<double>();
            double[] av = a.ToArray<double>(), bv = b.ToArray<double>();
            for (int i = 0; i < got.Length; i++)
            {
                double e = Math.Exp(av[i] * bv[i]);
                Assert.True(Math.Abs(got[i] - e) <= (dt == DType.Float32 ? 1e-5 : 1e-12) * (1 + e), $"{dt} scalar={scalarB} [{i}]: {got[i]} vs {e}");
            }
        }
    }
}
