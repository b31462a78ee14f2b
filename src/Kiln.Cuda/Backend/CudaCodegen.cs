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

    public static string CType(DType t) => t switch
    {
        DType.Float32 => "float",
        DType.Float64 => "double",
        DType.Int32 => "int",
        DType.Int64 => "long long",
        DType.Bool => "bool",
        _ => throw new NotSupportedException($"CUDA backend: dtype {t.ShortName()} is not supported yet (float32, float64, int32, int64, bool)"),
    };

    /// <summary>A C literal of <paramref name="v"/> in the dtype's precision (always with a decimal point or exponent).</summary>
    public static string Literal(double v, DType t)
    {
        string s = v.ToString("R", CultureInfo.InvariantCulture);
        if (!s.Contains('.') && !s.Contains('E') && !s.Contains('e')) s += ".0";   // "1f" would be a user-defined literal
        return t == DType.Float32 ? s + "f" : s;
    }

    /// <summary>The C expression of one step, or null when the op has no CUDA form here.</summary>
    public static string? Expression(OpDef op, string a, string? b, DType t)
    {
        bool f = t == DType.Float32;
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
    public static string Kernel(string name, DType outType, DType[] inTypes, IReadOnlyList<string> steps, bool[]? scalarInputs = null, bool vector4 = false)
    {
        if (scalarInputs is not null) return vector4 ? Dense4Kernel(name, outType, inTypes, steps, scalarInputs) : DenseKernel(name, outType, inTypes, steps, scalarInputs);
        var sb = new StringBuilder();
        sb.Append($"extern \"C\" __global__ void {name}({CType(outType)}* __restrict__ out, long long n, const long long* __restrict__ meta");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($", const {CType(inTypes[k])}* __restrict__ in{k}");
        sb.Append(")\n{\n");
        sb.Append("    int rank = (int)meta[0];\n    const long long* shape = meta + 1;\n");
        sb.Append("    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)\n    {\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"        long long o{k} = meta[1 + rank + {k} * (rank + 1)];\n");
        sb.Append("        long long rem = i;\n        for (int d = rank - 1; d >= 0; --d)\n        {\n            long long c = rem % shape[d]; rem /= shape[d];\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"            o{k} += c * meta[1 + rank + {k} * (rank + 1) + 1 + d];\n");
        sb.Append("        }\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"        {CType(inTypes[k])} x{k} = in{k}[o{k}];\n");
        foreach (var s in steps) sb.Append("        ").Append(s).Append('\n');
        sb.Append($"        out[i] = ({CType(outType)})t{steps.Count - 1};\n    }}\n}}\n");
        return sb.ToString();
    }

    /// <summary>
    /// The same kernel when every input is dense with the output's shape (element i at offset + i) or a single
    /// value: no per-element index arithmetic (the general kernel divides by every axis).
    /// meta keeps the general layout; only the offsets are read.
    /// </summary>
    private static string DenseKernel(string name, DType outType, DType[] inTypes, IReadOnlyList<string> steps, bool[] scalar)
    {
        var sb = new StringBuilder();
        sb.Append($"extern \"C\" __global__ void {name}({CType(outType)}* __restrict__ out, long long n, const long long* __restrict__ meta");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($", const {CType(inTypes[k])}* __restrict__ in{k}");
        sb.Append(")\n{\n    int rank = (int)meta[0];\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"    const {CType(inTypes[k])}* p{k} = in{k} + meta[1 + rank + {k} * (rank + 1)];\n");
        sb.Append("    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)\n    {\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"        {CType(inTypes[k])} x{k} = p{k}[{(scalar[k] ? "0" : "i")}];\n");
        foreach (var st in steps) sb.Append("        ").Append(st).Append('\n');
        sb.Append($"        out[i] = ({CType(outType)})t{steps.Count - 1};\n    }}\n}}\n");
        return sb.ToString();
    }

    /// <summary>
    /// Whether the dense kernel can move 16 bytes per load and store: the output and every non-scalar input are
    /// 4-byte elements (the caller also checks their addresses are 16-byte aligned).
    /// </summary>
    public static bool Vector4Eligible(DType outType, DType[] inTypes, bool[] scalar) =>
        outType.SizeInBytes() == 4 && inTypes.Select((t, k) => scalar[k] || t.SizeInBytes() == 4).All(b => b);

    /// <summary>
    /// The dense kernel with 16-byte vector loads and stores (4 elements per thread per step), a grid-stride
    /// loop over n/4 groups and a scalar tail for the last n % 4 elements. HBM bandwidth wants wide accesses:
    /// one float per thread leaves it well below the copy ceiling.
    /// </summary>
    private static string Dense4Kernel(string name, DType outType, DType[] inTypes, IReadOnlyList<string> steps, bool[] scalar)
    {
        var sb = new StringBuilder();
        string o = CType(outType);
        sb.Append("template <typename T> struct __align__(16) V4 { T v[4]; };\n");
        sb.Append($"extern \"C\" __global__ void {name}({o}* __restrict__ out, long long n, const long long* __restrict__ meta");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($", const {CType(inTypes[k])}* __restrict__ in{k}");
        sb.Append(")\n{\n    int rank = (int)meta[0];\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"    const {CType(inTypes[k])}* p{k} = in{k} + meta[1 + rank + {k} * (rank + 1)];\n");
        for (int k = 0; k < inTypes.Length; k++) if (scalar[k]) sb.Append($"    const {CType(inTypes[k])} s{k} = p{k}[0];\n");
        sb.Append("    long long groups = n / 4, stride = (long long)gridDim.x * blockDim.x, first = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n");
        sb.Append("    for (long long g = first; g < groups; g += stride)\n    {\n");
        for (int k = 0; k < inTypes.Length; k++)
            if (!scalar[k]) sb.Append($"        V4<{CType(inTypes[k])}> v{k} = reinterpret_cast<const V4<{CType(inTypes[k])}>*>(p{k})[g];\n");
        sb.Append($"        V4<{o}> r;\n        #pragma unroll\n        for (int j = 0; j < 4; ++j)\n        {{\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"            {CType(inTypes[k])} x{k} = {(scalar[k] ? $"s{k}" : $"v{k}.v[j]")};\n");
        foreach (var st in steps) sb.Append("            ").Append(st).Append('\n');
        sb.Append($"            r.v[j] = ({o})t{steps.Count - 1};\n        }}\n        reinterpret_cast<V4<{o}>*>(out)[g] = r;\n    }}\n");
        sb.Append("    for (long long i = groups * 4 + first; i < n; i += stride)\n    {\n");
        for (int k = 0; k < inTypes.Length; k++) sb.Append($"        {CType(inTypes[k])} x{k} = {(scalar[k] ? $"s{k}" : $"p{k}[i]")};\n");
        foreach (var st in steps) sb.Append("        ").Append(st).Append('\n');
        sb.Append($"        out[i] = ({o})t{steps.Count - 1};\n    }}\n}}\n");
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
            steps.Add($"{CType(t)} t{i} = {e};");
        }
        return steps;
    }
}
