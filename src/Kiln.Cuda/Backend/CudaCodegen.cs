// CUDA C for the engine's elementwise work, generated per program and dtype and compiled once by NVRTC (disk
// cached). One kernel shape serves single ops, fused groups, casts and strided copies: a grid-stride loop over
// the output in row-major order, each input read through its own strides (0 on broadcast axes) from a small
// metadata array, the whole program evaluated in registers.
using System.Globalization;
using System.Text;
using Kiln.Graph;

namespace Kiln.Cuda.Backend;

internal static class CudaCodegen
{
    public const int MaxRank = 8;

    /// <summary>The C type a value is stored as (bf16 and fp16 as their 16 raw bits).</summary>
    public static string CType(DType t) => t switch
    {
        DType.Float32 => "float",
        DType.Float64 => "double",
        DType.Int32 => "int",
        DType.Int64 => "long long",
        DType.Bool => "bool",
        DType.BFloat16 or DType.Float16 => "unsigned short",
        _ => throw new NotSupportedException($"CUDA backend: dtype {t.ShortName()} is not supported yet (float32, float64, bfloat16, float16, int32, int64, bool)"),
    };

    /// <summary>The C type arithmetic on a value is done in: fp32 for bf16 and fp16 (loaded widened, stored rounded).</summary>
    public static string Compute(DType t) => t is DType.BFloat16 or DType.Float16 ? "float" : CType(t);

    /// <summary>A stored element read as its compute type.</summary>
    public static string Load(DType t, string element) => t switch
    {
        DType.BFloat16 => $"kiln_bf2f({element})",
        DType.Float16 => $"kiln_h2f({element})",
        _ => element,
    };

    /// <summary>A compute-typed value converted for storing as <paramref name="t"/> (rounded to nearest even for bf16/fp16).</summary>
    public static string Store(DType t, string value) => t switch
    {
        DType.BFloat16 => $"kiln_f2bf((float)({value}))",
        DType.Float16 => $"kiln_f2h((float)({value}))",
        _ => $"({CType(t)})({value})",
    };

    /// <summary>Conversions every generated kernel may use (NVRTC has no headers here, so no cuda_bf16.h).</summary>
    public const string Prelude = """
        __device__ __forceinline__ float kiln_bf2f(unsigned short h) { return __uint_as_float(((unsigned)h) << 16); }
        __device__ __forceinline__ unsigned short kiln_f2bf(float f)
        {
            unsigned u = __float_as_uint(f);
            if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
            u += 0x7fffu + ((u >> 16) & 1u);
            return (unsigned short)(u >> 16);
        }
        __device__ __forceinline__ float kiln_h2f(unsigned short h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
        __device__ __forceinline__ unsigned short kiln_f2h(float f) { unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }

        """;

    private static bool FloatMath(DType t) => t is DType.Float32 or DType.BFloat16 or DType.Float16;

    /// <summary>A C literal of <paramref name="v"/> in the dtype's precision (always with a decimal point or exponent).</summary>
    public static string Literal(double v, DType t)
    {
        if (!double.IsFinite(v))   // no C literal spells ±inf or NaN: their bit patterns
        {
            bool single = FloatMath(t);
            string bits = double.IsNaN(v) ? (single ? "0x7fc00000" : "0x7ff8000000000000LL")
                : v > 0 ? (single ? "0x7f800000" : "0x7ff0000000000000LL") : (single ? "(int)0xff800000" : "(long long)0xfff0000000000000ULL");
            return single ? $"__int_as_float({bits})" : $"__longlong_as_double({bits})";
        }
        string s = v.ToString("R", CultureInfo.InvariantCulture);
        if (!s.Contains('.') && !s.Contains('E') && !s.Contains('e')) s += ".0";   // "1f" would be a user-defined literal
        return FloatMath(t) ? s + "f" : s;
    }

    /// <summary>The C expression of one step, or null when the op has no CUDA form here.</summary>
    public static string? Expression(OpDef op, string a, string? b, DType t)
    {
        bool f = FloatMath(t);
        string F(string name) => f ? name + "f" : name;
        string L(double v) => Literal(v, t);
        if (ReferenceEquals(op, OpTable.Neg)) return $"(-{a})";
        if (ReferenceEquals(op, OpTable.Abs)) return $"{F("fabs")}({a})";
        if (ReferenceEquals(op, OpTable.Exp)) return $"{F("exp")}({a})";
        if (ReferenceEquals(op, OpTable.Log)) return $"{F("log")}({a})";
        if (ReferenceEquals(op, OpTable.Sqrt)) return $"{F("sqrt")}({a})";
        if (ReferenceEquals(op, OpTable.Rsqrt)) return $"{F("rsqrt")}({a})";
        if (ReferenceEquals(op, OpTable.Sin)) return $"{F("sin")}({a})";
        if (ReferenceEquals(op, OpTable.Cos)) return $"{F("cos")}({a})";
        if (ReferenceEquals(op, OpTable.Tanh)) return $"{F("tanh")}({a})";
        if (ReferenceEquals(op, OpTable.Erf)) return $"{F("erf")}({a})";
        if (ReferenceEquals(op, OpTable.Sigmoid)) return $"({L(1)} / ({L(1)} + {F("exp")}(-{a})))";
        if (ReferenceEquals(op, OpTable.Relu)) return $"({a} > {L(0)} ? {a} : {L(0)})";
        if (ReferenceEquals(op, OpTable.Square)) return $"({a} * {a})";
        if (ReferenceEquals(op, OpTable.Silu)) return $"({a} / ({L(1)} + {F("exp")}(-{a})))";
        if (ReferenceEquals(op, OpTable.GeluTanh)) return $"({L(0.5)} * {a} * ({L(1)} + {F("tanh")}({L(0.7978845608028654)} * ({a} + {L(0.044715)} * {a} * {a} * {a}))))";
        if (ReferenceEquals(op, OpTable.GeluTanhGrad))
        {
            // ½(1 + t) + ½x(1 − t²)·k0(1 + 3k1x²), t = tanh(k0(x + k1x³)): the lambda keeps t in one register
            string th = $"{F("tanh")}({L(0.7978845608028654)} * ({a} + {L(0.044715)} * {a} * {a} * {a}))";
            return $"([&]() {{ auto t_ = {th}; return {L(0.5)} * ({L(1)} + t_) + {L(0.5)} * {a} * ({L(1)} - t_ * t_) * {L(0.7978845608028654)} * ({L(1)} + {L(3 * 0.044715)} * {a} * {a}); }}())";
        }
        if (ReferenceEquals(op, OpTable.GeluErf)) return $"({L(0.5)} * {a} * ({L(1)} + {F("erf")}({a} * {L(0.7071067811865476)})))";
        if (b is null) return null;
        if (ReferenceEquals(op, OpTable.Add)) return $"({a} + {b})";
        if (ReferenceEquals(op, OpTable.Sub)) return $"({a} - {b})";
        if (ReferenceEquals(op, OpTable.Mul)) return $"({a} * {b})";
        if (ReferenceEquals(op, OpTable.Div)) return $"({a} / {b})";
        if (ReferenceEquals(op, OpTable.Pow)) return $"{F("pow")}({a}, {b})";
        // NaN-propagating like torch.maximum/minimum (fmax would drop a NaN)
        if (ReferenceEquals(op, OpTable.Maximum)) return $"(({a} != {a} || {a} > {b}) ? {a} : {b})";
        if (ReferenceEquals(op, OpTable.Minimum)) return $"(({a} != {a} || {a} < {b}) ? {a} : {b})";
        return null;
    }

    /// <summary>
    /// A kernel <c>k(out, n, meta, in0, in1, ...)</c>: meta = [rank, shape[rank], then per input offset,
    /// strides[rank]]. <paramref name="steps"/> are C statements assigning t0, t1, ...; the last is the result.
    /// </summary>
    public static string Kernel(string name, DType outType, DType[] inTypes, IReadOnlyList<string> steps, bool[]? scalarInputs = null, int lanes = 0)
    {
        if (scalarInputs is not null) return lanes > 0 ? VectorKernel(name, outType, inTypes, steps, scalarInputs, lanes) : DenseKernel(name, outType, inTypes, steps, scalarInputs);
        var sb = new StringBuilder(Prelude);
        sb.Append($"extern \"C\" __global__ void {name}({CType(outType)}* __restrict__ out, long long n, const long long* __restrict__ meta");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($", const {CType(inTypes[k])}* __restrict__ in{k}");
        sb.Append(")\n{\n");
        sb.Append("    int rank = (int)meta[0];\n    const long long* shape = meta + 1;\n");
        sb.Append("    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)\n    {\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"        long long o{k} = meta[1 + rank + {k} * (rank + 1)];\n");
        sb.Append("        long long rem = i;\n        for (int d = rank - 1; d >= 0; --d)\n        {\n            long long c = rem % shape[d]; rem /= shape[d];\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"            o{k} += c * meta[1 + rank + {k} * (rank + 1) + 1 + d];\n");
        sb.Append("        }\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"        {Compute(inTypes[k])} x{k} = {Load(inTypes[k], $"in{k}[o{k}]")};\n");
        foreach (var s in steps) sb.Append("        ").Append(s).Append('\n');
        sb.Append($"        out[i] = {Store(outType, $"t{steps.Count - 1}")};\n    }}\n}}\n");
        return sb.ToString();
    }

    /// <summary>
    /// The same kernel when every input is dense with the output's shape (element i at offset + i) or a single
    /// value: no per-element index arithmetic (the general kernel divides by every axis).
    /// meta keeps the general layout; only the offsets are read.
    /// </summary>
    private static string DenseKernel(string name, DType outType, DType[] inTypes, IReadOnlyList<string> steps, bool[] scalar)
    {
        var sb = new StringBuilder(Prelude);
        sb.Append($"extern \"C\" __global__ void {name}({CType(outType)}* __restrict__ out, long long n, const long long* __restrict__ meta");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($", const {CType(inTypes[k])}* __restrict__ in{k}");
        sb.Append(")\n{\n    int rank = (int)meta[0];\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"    const {CType(inTypes[k])}* p{k} = in{k} + meta[1 + rank + {k} * (rank + 1)];\n");
        sb.Append("    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)\n    {\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"        {Compute(inTypes[k])} x{k} = {Load(inTypes[k], $"p{k}[{(scalar[k] ? "0" : "i")}]")};\n");
        foreach (var st in steps) sb.Append("        ").Append(st).Append('\n');
        sb.Append($"        out[i] = {Store(outType, $"t{steps.Count - 1}")};\n    }}\n}}\n");
        return sb.ToString();
    }

    /// <summary>
    /// Elements per 16-byte vector when the dense kernel can move 16 bytes per load and store: the output and
    /// every non-scalar input have one element size (4 lanes of fp32/int32, 8 of bf16/fp16); 0 otherwise. The
    /// caller also checks their addresses are 16-byte aligned.
    /// </summary>
    public static int VectorLanes(DType outType, DType[] inTypes, bool[] scalar)
    {
        int size = outType.SizeInBytes();
        if (size is not (2 or 4) || inTypes.Where((t, k) => !scalar[k]).Any(t => t.SizeInBytes() != size)) return 0;
        return 16 / size;
    }

    /// <summary>
    /// The dense kernel with 16-byte vector loads and stores (<paramref name="lanes"/> elements per thread per
    /// step), a grid-stride loop over n/lanes groups and a scalar tail for the rest. HBM bandwidth wants wide
    /// accesses: one float per thread leaves it well below the copy ceiling.
    /// </summary>
    private static string VectorKernel(string name, DType outType, DType[] inTypes, IReadOnlyList<string> steps, bool[] scalar, int lanes)
    {
        var sb = new StringBuilder(Prelude);
        string o = CType(outType);
        sb.Append($"template <typename T> struct __align__(16) V {{ T v[{lanes}]; }};\n");
        sb.Append($"extern \"C\" __global__ void {name}({o}* __restrict__ out, long long n, const long long* __restrict__ meta");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($", const {CType(inTypes[k])}* __restrict__ in{k}");
        sb.Append(")\n{\n    int rank = (int)meta[0];\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"    const {CType(inTypes[k])}* p{k} = in{k} + meta[1 + rank + {k} * (rank + 1)];\n");
        for (int k = 0; k < inTypes.Length; k++) if (scalar[k]) sb.Append($"    const {Compute(inTypes[k])} s{k} = {Load(inTypes[k], $"p{k}[0]")};\n");
        sb.Append($"    long long groups = n / {lanes}, stride = (long long)gridDim.x * blockDim.x, first = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n");
        sb.Append("    for (long long g = first; g < groups; g += stride)\n    {\n");
        for (int k = 0; k < inTypes.Length; k++)
            if (!scalar[k]) sb.Append($"        V<{CType(inTypes[k])}> v{k} = reinterpret_cast<const V<{CType(inTypes[k])}>*>(p{k})[g];\n");
        sb.Append($"        V<{o}> r;\n        #pragma unroll\n        for (int j = 0; j < {lanes}; ++j)\n        {{\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"            {Compute(inTypes[k])} x{k} = {(scalar[k] ? $"s{k}" : Load(inTypes[k], $"v{k}.v[j]"))};\n");
        foreach (var st in steps) sb.Append("            ").Append(st).Append('\n');
        sb.Append($"            r.v[j] = {Store(outType, $"t{steps.Count - 1}")};\n        }}\n        reinterpret_cast<V<{o}>*>(out)[g] = r;\n    }}\n");
        sb.Append($"    for (long long i = groups * {lanes} + first; i < n; i += stride)\n    {{\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"        {Compute(inTypes[k])} x{k} = {(scalar[k] ? $"s{k}" : Load(inTypes[k], $"p{k}[i]"))};\n");
        foreach (var st in steps) sb.Append("        ").Append(st).Append('\n');
        sb.Append($"        out[i] = {Store(outType, $"t{steps.Count - 1}")};\n    }}\n}}\n");
        return sb.ToString();
    }

    /// <summary>Statements for a fused program (operands ≥ 0 earlier steps, &lt; 0 input ~k), or null if unsupported.</summary>
    public static List<string>? Program(FusedInstruction[] program, DType t)
    {
        var steps = new List<string>();
        string Operand(int x) => x >= 0 ? $"t{x}" : $"x{~x}";
        for (int i = 0; i < program.Length; i++)
        {
            var s = program[i];
            var e = Expression(s.Op, Operand(s.A), s.Op.Arity == 2 ? Operand(s.B) : null, t);
            if (e is null) return null;
            steps.Add($"{Compute(t)} t{i} = {e};");
        }
        return steps;
    }
}
