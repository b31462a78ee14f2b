// Per-op Vector256 steps (fp32 and fp64 overloads) that runtime-compiled fused loops (FusedCodegen) call.
// Each mirrors the formula TensorPrimitives uses for the same op (exp, log, sin, cos from the runtime's
// Vector256 math; tanh as sign·(−expm1(−2|x|) / (expm1(−2|x|) + 2)); sigmoid 1/(1+e^(−x)); GELU as the
// interpreter's step sequence), so the compiled loop agrees with the span interpreter to the last bit or
// ulp. Ops .NET has no vector form of (pow, erf, exact GELU) run per lane with the interpreter's scalar math.
// Small helpers marked AggressiveInlining are inlined by the JIT into the compiled loop.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Cpu;

internal static class Vec256
{
    private const MethodImplOptions Inline = MethodImplOptions.AggressiveInlining;

    // ---- memory: the caller guarantees [i, i + Count) lies inside the array ----
    [MethodImpl(Inline)] public static Vector256<float> Load(float[] a, int i) => Vector256.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(a), (nuint)i);
    [MethodImpl(Inline)] public static Vector256<double> Load(double[] a, int i) => Vector256.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(a), (nuint)i);
    [MethodImpl(Inline)] public static void Store(float[] a, int i, Vector256<float> v) => v.StoreUnsafe(ref MemoryMarshal.GetArrayDataReference(a), (nuint)i);
    [MethodImpl(Inline)] public static void Store(double[] a, int i, Vector256<double> v) => v.StoreUnsafe(ref MemoryMarshal.GetArrayDataReference(a), (nuint)i);
    [MethodImpl(Inline)] public static Vector256<float> Broadcast(float x) => Vector256.Create(x);
    [MethodImpl(Inline)] public static Vector256<double> Broadcast(double x) => Vector256.Create(x);

    // ---- binary ----
    [MethodImpl(Inline)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(Inline)] public static Vector256<double> Add(Vector256<double> a, Vector256<double> b) => a + b;
    [MethodImpl(Inline)] public static Vector256<float> Sub(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(Inline)] public static Vector256<double> Sub(Vector256<double> a, Vector256<double> b) => a - b;
    [MethodImpl(Inline)] public static Vector256<float> Mul(Vector256<float> a, Vector256<float> b) => a * b;
    [MethodImpl(Inline)] public static Vector256<double> Mul(Vector256<double> a, Vector256<double> b) => a * b;
    [MethodImpl(Inline)] public static Vector256<float> Div(Vector256<float> a, Vector256<float> b) => a / b;
    [MethodImpl(Inline)] public static Vector256<double> Div(Vector256<double> a, Vector256<double> b) => a / b;
    [MethodImpl(Inline)] public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.Max(a, b);
    [MethodImpl(Inline)] public static Vector256<double> Max(Vector256<double> a, Vector256<double> b) => Vector256.Max(a, b);
    [MethodImpl(Inline)] public static Vector256<float> Min(Vector256<float> a, Vector256<float> b) => Vector256.Min(a, b);
    [MethodImpl(Inline)] public static Vector256<double> Min(Vector256<double> a, Vector256<double> b) => Vector256.Min(a, b);

    public static Vector256<float> Pow(Vector256<float> a, Vector256<float> b)
    {
        Span<float> x = stackalloc float[Vector256<float>.Count], y = stackalloc float[Vector256<float>.Count];
        a.CopyTo(x); b.CopyTo(y);
        System.Numerics.Tensors.TensorPrimitives.Pow(x, y, x);
        return Vector256.Create<float>(x);
    }

    public static Vector256<double> Pow(Vector256<double> a, Vector256<double> b)
    {
        Span<double> x = stackalloc double[Vector256<double>.Count], y = stackalloc double[Vector256<double>.Count];
        a.CopyTo(x); b.CopyTo(y);
        System.Numerics.Tensors.TensorPrimitives.Pow(x, y, x);
        return Vector256.Create<double>(x);
    }

    // ---- unary ----
    [MethodImpl(Inline)] public static Vector256<float> Neg(Vector256<float> x) => -x;
    [MethodImpl(Inline)] public static Vector256<double> Neg(Vector256<double> x) => -x;
    [MethodImpl(Inline)] public static Vector256<float> Abs(Vector256<float> x) => Vector256.Abs(x);
    [MethodImpl(Inline)] public static Vector256<double> Abs(Vector256<double> x) => Vector256.Abs(x);
    [MethodImpl(Inline)] public static Vector256<float> Square(Vector256<float> x) => x * x;
    [MethodImpl(Inline)] public static Vector256<double> Square(Vector256<double> x) => x * x;
    [MethodImpl(Inline)] public static Vector256<float> Relu(Vector256<float> x) => Vector256.Max(x, Vector256<float>.Zero);
    [MethodImpl(Inline)] public static Vector256<double> Relu(Vector256<double> x) => Vector256.Max(x, Vector256<double>.Zero);
    [MethodImpl(Inline)] public static Vector256<float> Sqrt(Vector256<float> x) => Vector256.Sqrt(x);
    [MethodImpl(Inline)] public static Vector256<double> Sqrt(Vector256<double> x) => Vector256.Sqrt(x);
    [MethodImpl(Inline)] public static Vector256<float> Rsqrt(Vector256<float> x) => Vector256<float>.One / Vector256.Sqrt(x);
    [MethodImpl(Inline)] public static Vector256<double> Rsqrt(Vector256<double> x) => Vector256<double>.One / Vector256.Sqrt(x);
    [MethodImpl(Inline)] public static Vector256<float> Exp(Vector256<float> x) => Vector256.Exp(x);
    [MethodImpl(Inline)] public static Vector256<double> Exp(Vector256<double> x) => Vector256.Exp(x);
    [MethodImpl(Inline)] public static Vector256<float> Log(Vector256<float> x) => Vector256.Log(x);
    [MethodImpl(Inline)] public static Vector256<double> Log(Vector256<double> x) => Vector256.Log(x);
    public static Vector256<float> Sin(Vector256<float> x) => Vector256.Sin(x);
    public static Vector256<double> Sin(Vector256<double> x) => Vector256.Sin(x);
    public static Vector256<float> Cos(Vector256<float> x) => Vector256.Cos(x);
    public static Vector256<double> Cos(Vector256<double> x) => Vector256.Cos(x);

    /// <summary>
    /// tanh(x) = sign(x)·|−z / (z + 2)|, z = e^(−2|x|) − 1: TensorPrimitives' formula, except that tanh(+0) is +0
    /// (TensorPrimitives' vector path returns −0, its scalar tail +0; −0 would turn a later rsqrt into −∞).
    /// </summary>
    [MethodImpl(Inline)]
    public static Vector256<float> Tanh(Vector256<float> x)
    {
        var z = Vector256.Exp(Vector256.Create(-2f) * Vector256.Abs(x)) - Vector256<float>.One;
        var sign = x.AsUInt32() & Vector256.Create(0x8000_0000u);
        return (sign | Vector256.Abs(-z / (z + Vector256.Create(2f))).AsUInt32()).AsSingle();
    }

    [MethodImpl(Inline)]
    public static Vector256<double> Tanh(Vector256<double> x)
    {
        var z = Vector256.Exp(Vector256.Create(-2d) * Vector256.Abs(x)) - Vector256<double>.One;
        var sign = x.AsUInt64() & Vector256.Create(0x8000_0000_0000_0000ul);
        return (sign | Vector256.Abs(-z / (z + Vector256.Create(2d))).AsUInt64()).AsDouble();
    }

    [MethodImpl(Inline)] public static Vector256<float> Sigmoid(Vector256<float> x) => Vector256<float>.One / (Vector256<float>.One + Vector256.Exp(-x));
    [MethodImpl(Inline)] public static Vector256<double> Sigmoid(Vector256<double> x) => Vector256<double>.One / (Vector256<double>.One + Vector256.Exp(-x));
    [MethodImpl(Inline)] public static Vector256<float> Silu(Vector256<float> x) => Sigmoid(x) * x;
    [MethodImpl(Inline)] public static Vector256<double> Silu(Vector256<double> x) => Sigmoid(x) * x;

    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) in the interpreter's order of operations.</summary>
    [MethodImpl(Inline)]
    public static Vector256<float> GeluTanh(Vector256<float> x)
    {
        var y = x * x * Vector256.Create(0.044715f) + Vector256<float>.One;
        y = y * x * Vector256.Create(0.7978845608028654f);
        return (Tanh(y) + Vector256<float>.One) * x * Vector256.Create(0.5f);
    }

    /// <summary>d/dx of the tanh GELU, in UnaryKernels.GeluTanhGrad's order of operations.</summary>
    [MethodImpl(Inline)]
    public static Vector256<float> GeluTanhGrad(Vector256<float> x)
    {
        var x2 = x * x;
        var t = Tanh((x2 * Vector256.Create(0.044715f) + Vector256<float>.One) * x * Vector256.Create(0.7978845608028654f));
        var half = Vector256.Create(0.5f);
        var du = (x2 * Vector256.Create(0.134145f) + Vector256<float>.One) * Vector256.Create(0.7978845608028654f);
        return (t + Vector256<float>.One) * half + x * half * (Vector256<float>.One - t * t) * du;
    }

    [MethodImpl(Inline)]
    public static Vector256<double> GeluTanh(Vector256<double> x)
    {
        var y = x * x * Vector256.Create(0.044715) + Vector256<double>.One;
        y = y * x * Vector256.Create(0.7978845608028654);
        return (Tanh(y) + Vector256<double>.One) * x * Vector256.Create(0.5);
    }

    /// <summary>d/dx of the tanh GELU, in UnaryKernels.GeluTanhGrad's order of operations.</summary>
    [MethodImpl(Inline)]
    public static Vector256<double> GeluTanhGrad(Vector256<double> x)
    {
        var x2 = x * x;
        var t = Tanh((x2 * Vector256.Create(0.044715) + Vector256<double>.One) * x * Vector256.Create(0.7978845608028654));
        var half = Vector256.Create(0.5);
        var du = (x2 * Vector256.Create(0.134145) + Vector256<double>.One) * Vector256.Create(0.7978845608028654);
        return (t + Vector256<double>.One) * half + x * half * (Vector256<double>.One - t * t) * du;
    }

    // exact GELU and erf: the interpreter's double-precision series per lane (no vector erf exists).
    public static Vector256<float> GeluErf(Vector256<float> x)
    {
        Span<float> t = stackalloc float[Vector256<float>.Count];
        x.CopyTo(t);
        UnaryKernels<float>.GeluErf(t, t);
        return Vector256.Create<float>(t);
    }

    public static Vector256<double> GeluErf(Vector256<double> x)
    {
        Span<double> t = stackalloc double[Vector256<double>.Count];
        x.CopyTo(t);
        UnaryKernels<double>.GeluErf(t, t);
        return Vector256.Create<double>(t);
    }

    public static Vector256<float> Erf(Vector256<float> x)
    {
        Span<float> t = stackalloc float[Vector256<float>.Count];
        x.CopyTo(t);
        UnaryKernels<float>.Erf(t, t);
        return Vector256.Create<float>(t);
    }

    public static Vector256<double> Erf(Vector256<double> x)
    {
        Span<double> t = stackalloc double[Vector256<double>.Count];
        x.CopyTo(t);
        UnaryKernels<double>.Erf(t, t);
        return Vector256.Create<double>(t);
    }
}
