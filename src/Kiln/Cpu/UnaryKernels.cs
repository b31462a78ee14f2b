// Span maps for the unary float ops (fp32 and fp64), vectorized by TensorPrimitives where it has the
// function; GELU/SiLU are composed from vectorized pieces; erf is scalar (no vectorized erf exists).
using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;

namespace Kiln.Cpu;

internal static class UnaryKernels<T> where T : unmanaged, IFloatingPointIeee754<T>, IExponentialFunctions<T>, IHyperbolicFunctions<T>
{
    public static void Neg(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Negate(x, y);
    public static void Abs(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Abs(x, y);
    public static void Exp(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Exp(x, y);
    public static void Log(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Log(x, y);
    public static void Sqrt(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Sqrt(x, y);
    public static void Rsqrt(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.ReciprocalSqrt(x, y);
    public static void Sin(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Sin(x, y);
    public static void Cos(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Cos(x, y);
    public static void Tanh(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Tanh(x, y);
    public static void Sigmoid(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Sigmoid(x, y);
    public static void Relu(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Max(x, T.Zero, y);
    public static void Square(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Multiply(x, x, y);

    public static void Silu(ReadOnlySpan<T> x, Span<T> y)
    {
        TensorPrimitives.Sigmoid(x, y);
        TensorPrimitives.Multiply(y, x, y);
    }

    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), PyTorch's approximate="tanh".</summary>
    public static void GeluTanh(ReadOnlySpan<T> x, Span<T> y)
    {
        T c = T.CreateChecked(0.7978845608028654), k = T.CreateChecked(0.044715), half = T.CreateChecked(0.5);
        TensorPrimitives.Multiply(x, x, y);                 // x²
        TensorPrimitives.Multiply(y, k, y);
        TensorPrimitives.Add(y, T.One, y);                   // 1 + k·x²
        TensorPrimitives.Multiply(y, x, y);                  // x + k·x³
        TensorPrimitives.Multiply(y, c, y);
        TensorPrimitives.Tanh(y, y);
        TensorPrimitives.Add(y, T.One, y);
        TensorPrimitives.Multiply(y, x, y);
        TensorPrimitives.Multiply(y, half, y);
    }

    /// <summary>
    /// d/dx of the tanh GELU: 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh(√(2/π)·(x + 0.044715·x³)).
    /// One op for the backward of gelu_tanh (what cuBLASLt's DGELU epilogue computes), in the vector forms' order.
    /// </summary>
    public static void GeluTanhGrad(ReadOnlySpan<T> x, Span<T> y)
    {
        T c = T.CreateChecked(0.7978845608028654), k = T.CreateChecked(0.044715), k3 = T.CreateChecked(0.134145), half = T.CreateChecked(0.5);
        for (int i = 0; i < x.Length; i++)
        {
            T v = x[i], v2 = v * v;
            T t = T.Tanh((v2 * k + T.One) * v * c);
            y[i] = (t + T.One) * half + v * half * (T.One - t * t) * ((v2 * k3 + T.One) * c);
        }
    }

    /// <summary>0.5·x·(1 + erf(x/√2)), PyTorch's exact GELU.</summary>
    public static void GeluErf(ReadOnlySpan<T> x, Span<T> y)
    {
        for (int i = 0; i < x.Length; i++)
        {
            double v = double.CreateChecked(x[i]);
            y[i] = T.CreateChecked(0.5 * v * (1 + ErfMath.Erf(v * 0.7071067811865476)));
        }
    }

    public static void Erf(ReadOnlySpan<T> x, Span<T> y)
    {
        for (int i = 0; i < x.Length; i++) y[i] = T.CreateChecked(ErfMath.Erf(double.CreateChecked(x[i])));
    }
}

internal static class ErfMath
{
    /// <summary>
    /// erf in double precision from the all-positive series erf(x) = 2/√π·e^(−x²)·Σ (2x²)ⁿ·x / (1·3·…·(2n+1)),
    /// which has no cancellation, so it is accurate to a few ulps; |x| ≥ 6 is ±1 to double precision.
    /// </summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        double ax = Math.Abs(x);
        if (ax >= 6) return Math.Sign(x);
        double t = ax, sum = ax, x2 = 2 * ax * ax;
        for (int n = 1; n < 500 && t > sum * 1e-17; n++)
        {
            t *= x2 / (2 * n + 1);
            sum += t;
        }
        double r = 2 / Math.Sqrt(Math.PI) * Math.Exp(-ax * ax) * sum;
        return x < 0 ? -r : r;
    }
}
