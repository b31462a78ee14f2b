// Without a GPU: the CUDA C that CudaCodegen generates (general, dense and 16-byte-vector kernels; fp32, fp64,
// bf16, fp16, bool; every op with a CUDA form; ±inf/NaN literals) is valid C++ once CUDA's keywords and
// intrinsics are stubbed, checked with g++ -fsyntax-only. A syntax error in generated code otherwise shows only
// on a GPU machine (as "-Infinity.0f" did). Skips, saying so, where no g++ is installed.
using System.Diagnostics;
using Kiln.Cuda.Backend;
using Kiln.Graph;

namespace Kiln.Cuda.Tests;

public class GeneratedSourceTests
{
    private const string Stubs = """
        #include <cmath>
        #include <math.h>
        #define __global__
        #define __device__
        #define __forceinline__ inline
        #define __restrict__
        #define __align__(n) alignas(n)
        #define asm(...) (void)0
        struct kiln_dim3 { unsigned x, y, z; };
        static kiln_dim3 threadIdx, blockIdx, blockDim, gridDim;
        inline float __int_as_float(int x) { float f; __builtin_memcpy(&f, &x, 4); return f; }
        inline float __uint_as_float(unsigned x) { float f; __builtin_memcpy(&f, &x, 4); return f; }
        inline unsigned __float_as_uint(float x) { unsigned u; __builtin_memcpy(&u, &x, 4); return u; }
        inline double __longlong_as_double(long long x) { double d; __builtin_memcpy(&d, &x, 8); return d; }
        inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
        inline double rsqrt(double x) { return 1.0 / sqrt(x); }
        #include <algorithm>
        using std::min; using std::max;
        #define __shared__ static
        #define __launch_bounds__(...)
        inline void __syncthreads() {}
        template <typename T> inline T __shfl_xor_sync(unsigned, T v, int, int = 32) { return v; }
        template <typename T> inline T __shfl_sync(unsigned, T v, int, int = 32) { return v; }
        template <typename T> inline T __shfl_down_sync(unsigned, T v, unsigned, int = 32) { return v; }
        inline int __float_as_int(float x) { int i; __builtin_memcpy(&i, &x, 4); return i; }
        template <typename T> inline T atomicAdd(T* p, T v) { T old = *p; *p += v; return old; }
        inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp, unsigned long long v) { auto old = *p; if (old == cmp) *p = v; return old; }
        inline unsigned int atomicCAS(unsigned int* p, unsigned int cmp, unsigned int v) { auto old = *p; if (old == cmp) *p = v; return old; }

        """;

    private static string? Gxx() =>
        new[] { "/usr/bin/g++", "/usr/local/bin/g++" }.FirstOrDefault(File.Exists);

    private static void AssertCompiles(string name, string source)
    {
        string dir = Directory.CreateTempSubdirectory("kiln-gen-").FullName;
        try
        {
            string file = Path.Combine(dir, name + ".cpp");
            File.WriteAllText(file, Stubs + source);
            var psi = new ProcessStartInfo(Gxx()!, ["-std=c++17", "-fsyntax-only", "-w", file]) { RedirectStandardError = true, RedirectStandardOutput = true };
            using var p = Process.Start(psi)!;
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, $"{name}: generated CUDA C does not compile:\n{err}\n--- source ---\n{source}");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    public static TheoryData<DType> FloatTypes => new() { DType.Float32, DType.Float64, DType.BFloat16, DType.Float16 };

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Every_unary_and_binary_op_in_every_kernel_shape(DType t)
    {
        Assert.SkipWhen(Gxx() is null, "g++ is not installed: the generated-source syntax check needs it");
        var unary = new[] { OpTable.Neg, OpTable.Abs, OpTable.Exp, OpTable.Log, OpTable.Sqrt, OpTable.Rsqrt, OpTable.Sin, OpTable.Cos, OpTable.Tanh,
            OpTable.Erf, OpTable.Sigmoid, OpTable.Relu, OpTable.Square, OpTable.Silu, OpTable.GeluTanh, OpTable.GeluErf };
        var binary = new[] { OpTable.Add, OpTable.Sub, OpTable.Mul, OpTable.Div, OpTable.Pow, OpTable.Maximum, OpTable.Minimum };
        // One program chaining every op: t0 = op(x0), then each binary op mixes in x1.
        var program = new List<FusedInstruction>();
        foreach (var op in unary) program.Add(new FusedInstruction(op, program.Count == 0 ? ~0 : program.Count - 1, 0));
        foreach (var op in binary) program.Add(new FusedInstruction(op, program.Count - 1, ~1));
        var steps = CudaCodegen.Program([.. program], t);
        Assert.NotNull(steps);
        // ±inf and NaN constants the way fills and masks produce them.
        string c = CudaCodegen.Compute(t);
        steps!.Add($"{c} t{steps.Count} = t{steps.Count - 1} + {CudaCodegen.Literal(double.NegativeInfinity, t)} * ({c})0 + {CudaCodegen.Literal(double.PositiveInfinity, t)} * ({c})0 + {CudaCodegen.Literal(double.NaN, t)} * ({c})0 + {CudaCodegen.Literal(-1.5, t)};");
        DType[] ins = [t, t];
        AssertCompiles($"general_{t}", CudaCodegen.Kernel("k_general", t, ins, steps));
        AssertCompiles($"dense_{t}", CudaCodegen.Kernel("k_dense", t, ins, steps, [false, true]));
        int lanes = CudaCodegen.VectorLanes(t, ins, [false, true]);
        if (lanes > 0) AssertCompiles($"vector_{t}", CudaCodegen.Kernel("k_vec", t, ins, steps, [false, true], lanes));
    }

    [Fact]
    public void Casts_comparisons_and_where()
    {
        Assert.SkipWhen(Gxx() is null, "g++ is not installed: the generated-source syntax check needs it");
        foreach (var (from, to) in new[] { (DType.Float32, DType.BFloat16), (DType.BFloat16, DType.Float32), (DType.Float16, DType.Float64), (DType.Int32, DType.Float32), (DType.Float32, DType.Bool) })
            AssertCompiles($"cast_{from}_{to}", CudaCodegen.Kernel("k_cast", to, [from], [$"{CudaCodegen.Compute(to)} t0 = ({CudaCodegen.Compute(to)})x0;"], [false]));
        AssertCompiles("compare_bf16", CudaCodegen.Kernel("k_cmp", DType.Bool, [DType.BFloat16, DType.BFloat16], ["bool t0 = (x0 <= x1);"]));
        AssertCompiles("where_f16", CudaCodegen.Kernel("k_where", DType.Float16, [DType.Bool, DType.Float16, DType.Float16], ["float t0 = x0 ? x1 : x2;"], [false, false, true]));
        AssertCompiles("where_f32_vec", CudaCodegen.Kernel("k_where_v", DType.Float32, [DType.Float32, DType.Float32], ["float t0 = x0 > x1 ? x0 : x1;"], [false, false], 4));
    }

    [Fact]
    public void Layout_kernels_triangle_with_infinite_fill_and_strided_stores()
    {
        Assert.SkipWhen(Gxx() is null, "g++ is not installed: the generated-source syntax check needs it");
        foreach (var t in new[] { DType.Float32, DType.BFloat16, DType.Float64 })
        {
            var statement = CudaBackend.TriangleStatement(t, new TriangleAttrs(true, 3, double.NegativeInfinity), 7, 9);
            AssertCompiles($"triangle_{t}", CudaCodegen.Kernel("k_tri", t, [t], [statement], [false]));   // dense: reads the flat index i
            AssertCompiles($"store_into_{t}", CudaBackend.StoreIntoSource("k_store", t));
        }
        AssertCompiles("store_into_bool", CudaBackend.StoreIntoSource("k_store", DType.Bool));
    }

    [Fact]
    public void Every_hand_written_module_with_the_common_header()
    {
        Assert.SkipWhen(Gxx() is null, "g++ is not installed: the generated-source syntax check needs it");
        foreach (var module in CudaKernels.ModuleNames)
            AssertCompiles($"module_{module}", CudaKernels.Source(module));
    }

    [Fact]
    public void Reductions_of_every_kind_and_dtype()
    {
        Assert.SkipWhen(Gxx() is null, "g++ is not installed: the generated-source syntax check needs it");
        foreach (var kind in Enum.GetValues<CudaReduceKind>())
            foreach (var t in new[] { DType.Float32, DType.Float64, DType.BFloat16, DType.Float16, DType.Int32 })
            {
                var output = kind == CudaReduceKind.ArgMax ? DType.Int64 : t;
                AssertCompiles($"reduce_{kind}_{t}", CudaIndexCodegen.Reduce("k_reduce", kind, t, output));
                AssertCompiles($"reduce_finish_{kind}_{t}", CudaIndexCodegen.ReduceFinish("k_finish", kind, output));
            }
    }

    [Fact]
    public void Gather_and_scatter_add_for_every_dtype_and_index_type()
    {
        Assert.SkipWhen(Gxx() is null, "g++ is not installed: the generated-source syntax check needs it");
        foreach (var index in new[] { DType.Int32, DType.Int64 })
        {
            foreach (var t in new[] { DType.Float32, DType.Float64, DType.BFloat16, DType.Int32, DType.Int64, DType.Bool })
                AssertCompiles($"gather_{t}_{index}", CudaIndexCodegen.Gather("k_gather", t, index));
            foreach (var t in new[] { DType.Float32, DType.Float64, DType.Int32, DType.Int64, DType.BFloat16, DType.Float16 })
                AssertCompiles($"scatter_add_{t}_{index}", CudaIndexCodegen.ScatterAdd("k_scatter", t, index));
        }
    }
}
