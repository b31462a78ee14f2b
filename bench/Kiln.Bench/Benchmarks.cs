// BenchmarkDotNet suites for detailed runs (`dotnet run -c Release --project bench/Kiln.Bench -- --filter '*'`).
using BenchmarkDotNet.Attributes;
using Kiln;

namespace Kiln.Bench;

[MemoryDiagnoser]
public class GemmBenchmarks
{
    [Params(256, 512, 1024)] public int N;
    private Tensor _a = null!, _b = null!;

    [GlobalSetup] public void Setup() { _a = Tensor.RandomNormal([N, N], 1); _b = Tensor.RandomNormal([N, N], 2); }
    [Benchmark] public Tensor MatMul() => _a.MatMul(_b).Eval();
}

[MemoryDiagnoser]
public class RowOpBenchmarks
{
    private Tensor _x = null!, _w = null!, _b = null!;

    [GlobalSetup] public void Setup() { _x = Tensor.RandomNormal([1, 128, 1024], 1); _w = Tensor.Ones([1024]); _b = Tensor.Zeros([1024]); }
    [Benchmark] public Tensor Softmax() => _x.Softmax(-1).Eval();
    [Benchmark] public Tensor RmsNorm() => Ops.RmsNorm(_x, _w).Eval();
    [Benchmark] public Tensor LayerNorm() => Ops.LayerNorm(_x, _w, _b).Eval();
    [Benchmark] public Tensor EltwiseChain() => (((_x * 1.5 + 0.5).Tanh() * _x).Sigmoid() - _x * 0.25).Eval();
}

public class GraphBenchmarks
{
    private Tensor _x = null!;

    [GlobalSetup] public void Setup() => _x = Tensor.RandomNormal([16], 1);

    /// <summary>Host cost of building and evaluating a 100-node chain of tiny ops.</summary>
    [Benchmark] public Tensor Chain100()
    {
        var y = _x;
        for (int i = 0; i < 100; i++) y = y * 1.0001 + 0.001;
        return y.Eval();
    }
}
