// Per-op Vector512 steps (fp32 and fp64 overloads) that runtime-compiled fused loops (FusedCodegen) call on
// AVX-512 machines: Vec256.cs with 256 replaced by 512 (keep the two in step).
// Each mirrors the formula TensorPrimitives uses for the same op (exp, log, sin, cos from the runtime's
// Vector512 math; tanh as sign·(−expm1(−2|x|) / (expm1(−2|x|) + 2)); sigmoid 1/(1+e^(−x)); GELU as the
// interpreter's step sequence), so the compiled loop agrees with the span interpreter to the last bit or
// ulp. Ops .NET has no vector form of (pow, erf, exact GELU) run per lane with the interpreter's scalar math.
// Small helpers marked AggressiveInlining are inlined by the JIT into the compiled loop.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Cpu;

internal static class Vec512
{
    private const MethodImplOptions Inline = MethodImplOptions.AggressiveInlining;

    // ---- memory: the caller guarantees [i, i + Count) lies inside the array ----
    [MethodImpl(Inline)] public static Vector512<float> Load(float[] a, int i) => Vector512.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(a), (nuint)i);
    [MethodImpl(Inline)] public static Vector512<double> Load(double[] a, int i) => Vector512.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(a), (nuint)i);
    [MethodImpl(Inline)] public static void Store(float[] a, int i, Vector512<float> v) => v.StoreUnsafe(ref MemoryMarshal.GetArrayDataReference(a), (nuint)i);
    [MethodImpl(Inline)] public static void Store(double[] a, int i, Vector512<double> v) => v.StoreUnsafe(ref MemoryMarshal.GetArrayDataReference(a), (nuint)i);
    [MethodImpl(Inline)] public static Vector512<float> Broadcast(float x) => Vector512.Create(x);
    [MethodImpl(Inline)] public static Vector512<double> Broadcast(double x) => Vector512.Create(x);

    // ---- binary ----
    [MethodImpl(Inline)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(Inline)] public static Vector512<double> Add(Vector512<double> a, Vector512<double> b) => a + b;
    [MethodImpl(Inline)] public static Vector512<float> Sub(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(Inline)] public static Vector512<double> Sub(Vector512<double> a, Vector512<double> b) => a - b;
    [MethodImpl(Inline)] public static Vector512<float> Mul(Vector512<float> a, Vector512<float> b) => a * b;
    [MethodImpl(Inline)] public static Vector512<double> Mul(Vector512<double> a, Vector512<double> b) => a * b;
    [MethodImpl(Inline)] public static Vector512<float> Div(Vector512<float> a, Vector512<float> b) => a / b;
    [MethodImpl(Inline)] public static Vector512<double> Div(Vector512<double> a, Vector512<double> b) => a / b;
    [MethodImpl(Inline)] public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);
    [MethodImpl(Inline)] public static Vector512<double> Max(Vector512<double> a, Vector512<double> b) => Vector512.Max(a, b);
    [MethodImpl(Inline)] public static Vector512<float> Min(Vector512<float> a, Vector512<float> b) => Vector512.Min(a, b);
    [MethodImpl(Inline)] public static Vector512<double> Min(Vector512<double> a, Vector512<double> b) => Vector512.Min(a, b);

    public static Vector512<float> Pow(Vector512<float> a, Vector512<float> b)
    {
        Span<float> x = stackalloc float[Vector512<float>.Count], y = stackalloc float[Vector512<float>.Count];
        a.CopyTo(x); b.CopyTo(y);
        System.Numerics.Tensors.TensorPrimitives.Pow(x, y, x);
        return Vector512.Create<float>(x);
    }

    public static Vector512<double> Pow(Vector512<double> a, Vector512<double> b)
    {
        Span<double> x = stackalloc double[Vector512<double>.Count], y = stackalloc double[Vector512<double>.Count];
        a.CopyTo(x); b.CopyTo(y);
        System.Numerics.Tensors.TensorPrimitives.Pow(x, y, x);
        return Vector512.Create<double>(x);
    }

    // ---- unary ----
    [MethodImpl(Inline)] public static Vector512<float> Neg(Vector512<float> x) => -x;
    [MethodImpl(Inline)] public static Vector512<double> Neg(Vector512<double> x) => -x;
    [MethodImpl(Inline)] public static Vector512<float> Abs(Vector512<float> x) => Vector512.Abs(x);
    [MethodImpl(Inline)] public static Vector512<double> Abs(Vector512<double> x) => Vector512.Abs(x);
    [MethodImpl(Inline)] public static Vector512<float> Square(Vector512<float> x) => x * x;
    [MethodImpl(Inline)] public static Vector512<double> Square(Vector512<double> x) => x * x;
    [MethodImpl(Inline)] public static Vector512<float> Relu(Vector512<float> x) => Vector512.Max(x, Vector512<float>.Zero);
    [MethodImpl(Inline)] public static Vector512<double> Relu(Vector512<double> x) => Vector512.Max(x, Vector512<double>.Zero);
    [MethodImpl(Inline)] public static Vector512<float> Sqrt(Vector512<float> x) => Vector512.Sqrt(x);
    [MethodImpl(Inline)] public static Vector512<double> Sqrt(Vector512<double> x) => Vector512.Sqrt(x);
    [MethodImpl(Inline)] public static Vector512<float> Rsqrt(Vector512<float> x) => Vector512<float>.One / Vector512.Sqrt(x);
    [MethodImpl(Inline)] public static Vector512<double> Rsqrt(Vector512<double> x) => Vector512<double>.One / Vector512.Sqrt(x);
    [MethodImpl(Inline)] public static Vector512<float> Exp(Vector512<float> x) => Vector512.Exp(x);
    [MethodImpl(Inline)] public static Vector512<double> Exp(Vector512<double> x) => Vector512.Exp(x);
    [MethodImpl(Inline)] public static Vector512<float> Log(Vector512<float> x) => Vector512.Log(x);
    [MethodImpl(Inline)] public static Vector512<double> Log(Vector512<double> x) => Vector512.Log(x);
    public static Vector512<float> Sin(Vector512<float> x) => Vector512.Sin(x);
    public static Vector512<double> Sin(Vector512<double> x) => Vector512.Sin(x);
    public static Vector512<float> Cos(Vector512<float> x) => Vector512.Cos(x);
    public static Vector512<double> Cos(Vector512<double> x) => Vector512.Cos(x);

    /// <summary>
    /// tanh(x) = sign(x)·|−z / (z + 2)|, z = e^(−2|x|) − 1: TensorPrimitives' formula, except that tanh(+0) is +0
    /// (TensorPrimitives' vector path returns −0, its scalar tail +0; −0 would turn a later rsqrt into −∞).
    /// </summary>
    [MethodImpl(Inline)]
    public static Vector512<float> Tanh(Vector512<float> x)
    {
        var z = Vector512.Exp(Vector512.Create(-2f) * Vector512.Abs(x)) - Vector512<float>.One;
        var sign = x.AsUInt32() & Vector512.Create(0x8000_0000u);
        return (sign | Vector512.Abs(-z / (z + Vector512.Create(2f))).AsUInt32()).AsSingle();
    }

    [MethodImpl(Inline)]
    public static Vector512<double> Tanh(Vector512<double> x)
    {
        var z = Vector512.Exp(Vector512.Create(-2d) * Vector512.Abs(x)) - Vector512<double>.One;
        var sign = x.AsUInt64() & Vector512.Create(0x8000_0000_0000_0000ul);
        return (sign | Vector512.Abs(-z / (z + Vector512.Create(2d))).AsUInt64()).AsDouble();
    }

    [MethodImpl(Inline)] public static Vector512<float> Sigmoid(Vector512<float> x) => Vector512<float>.One / (Vector512<float>.One + Vector512.Exp(-x));
    [MethodImpl(Inline)] public static Vector512<double> Sigmoid(Vector512<double> x) => Vector512<double>.One / (Vector512<double>.One + Vector512.Exp(-x));
    [MethodImpl(Inline)] public static Vector512<float> Silu(Vector512<float> x) => Sigmoid(x) * x;
    [MethodImpl(Inline)] public static Vector512<double> Silu(Vector512<double> x) => Sigmoid(x) * x;

    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) in the interpreter's order of operations.</summary>
    [MethodImpl(Inline)]
    public static Vector512<float> GeluTanh(Vector512<float> x)
    {
        var y = x * x * Vector512.Create(0.044715f) + Vector512<float>.One;
        y = y * x * Vector512.Create(0.7978845608028654f);
        return (Tanh(y) + Vector512<float>.One) * x * Vector512.Create(0.5f);
    }

    /// <summary>d/dx of the tanh GELU, in UnaryKernels.GeluTanhGrad's order of operations.</summary>
    [MethodImpl(Inline)]
    public static Vector512<float> GeluTanhGrad(Vector512<float> x)
    {
        var x2 = x * x;
        var t = Tanh((x2 * Vector512.Create(0.044715f) + Vector512<float>.One) * x * Vector512.Create(0.7978845608028654f));
        var half = Vector512.Create(0.5f);
        var du = (x2 * Vector512.Create(0.134145f) + Vector512<float>.One) * Vector512.Create(0.7978845608028654f);
        return (t + Vector512<float>.One) * half + x * half * (Vector512<float>.One - t * t) * du;
    }

    [MethodImpl(Inline)]
    public static Vector512<double> GeluTanh(Vector512<double> x)
    {
        var y = x * x * Vector512.Create(0.044715) + Vector512<double>.One;
        y = y * x * Vector512.Create(0.7978845608028654);
        return (Tanh(y) + Vector512<double>.One) * x * Vector512.Create(0.5);
    }

    /// <summary>d/dx of the tanh GELU, in UnaryKernels.GeluTanhGrad's order of operations.</summary>
    [MethodImpl(Inline)]
    public static Vector512<double> GeluTanhGrad(Vector512<double> x)
    {
        var x2 = x * x;
        var t = Tanh((x2 * Vector512.Create(0.044715) + Vector512<double>.One) * x * Vector512.Create(0.7978845608028654));
        var half = Vector512.Create(0.5);
        var du = (x2 * Vector512.Create(0.134145) + Vector512<double>.One) * Vector512.Create(0.7978845608028654);
        return (t + Vector512<double>.One) * half + x * half * (Vector512<double>.One - t * t) * du;
    }

    // exact GELU and erf: the interpreter's double-precision series per lane (no vector erf exists).
    public static Vector512<float> GeluErf(Vector512<float> x)
    {
        Span<float> t = stackalloc float[Vector512<float>.Count];
        x.CopyTo(t);
        UnaryKernels<float>.GeluErf(t, t);
        return Vector512.Create<float>(t);
    }

    public static Vector512<double> GeluErf(Vector512<double> x)
    {
        Span<double> t = stackalloc double[Vector512<double>.Count];
        x.CopyTo(t);
        UnaryKernels<double>.GeluErf(t, t);
        return Vector512.Create<double>(t);
    }

    public static Vector512<float> Erf(Vector512<float> x)
    {
        Span<float> t = stackalloc float[Vector512<float>.Count];
        x.CopyTo(t);
        UnaryKernels<float>.Erf(t, t);
        return Vector512.Create<float>(t);
    }

    public static Vector512<double> Erf(Vector512<double> x)
    {
        Span<double> t = stackalloc double[Vector512<double>.Count];
        x.CopyTo(t);
        UnaryKernels<double>.Erf(t, t);
        return Vector512.Create<double>(t);
    }
}
