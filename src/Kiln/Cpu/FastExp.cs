// Vectorized fp32 exp fused with the sum that softmax and logsumexp need, so a row is read once for the
// exponentials instead of three times (subtract, exp, sum). The polynomial is Cephes' expf (relative error
// ~1e-7); below the smallest normal result it returns 0 and NaN stays NaN, like MathF.Exp.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Cpu;

internal static class FastExp
{
    private const float Log2E = 1.44269504088896341f, C1 = 0.693359375f, C2 = -2.12194440e-4f;
    private const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f,
        P3 = 4.1665795894e-2f, P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;
    private const float Hi = 88.3762626647949f, Lo = -87.3365447505531f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Exp(Vector512<float> x)
    {
        var nan = ~Vector512.Equals(x, x);
        var tooSmall = Vector512.LessThan(x, Vector512.Create(Lo));
        var v = Vector512.Min(Vector512.Max(x, Vector512.Create(Lo)), Vector512.Create(Hi));
        var fx = Vector512.Floor(Vector512.FusedMultiplyAdd(v, Vector512.Create(Log2E), Vector512.Create(0.5f)));
        v = Vector512.FusedMultiplyAdd(fx, Vector512.Create(-C1), v);
        v = Vector512.FusedMultiplyAdd(fx, Vector512.Create(-C2), v);
        var z = v * v;
        var y = Vector512.FusedMultiplyAdd(Vector512.Create(P0), v, Vector512.Create(P1));
        y = Vector512.FusedMultiplyAdd(y, v, Vector512.Create(P2));
        y = Vector512.FusedMultiplyAdd(y, v, Vector512.Create(P3));
        y = Vector512.FusedMultiplyAdd(y, v, Vector512.Create(P4));
        y = Vector512.FusedMultiplyAdd(y, v, Vector512.Create(P5));
        y = Vector512.FusedMultiplyAdd(y, z, v + Vector512<float>.One);
        var pow2n = (Vector512.ConvertToInt32(fx) + Vector512.Create(127)) << 23;
        y *= pow2n.AsSingle();
        y = Vector512.ConditionalSelect(tooSmall, Vector512<float>.Zero, y);
        return Vector512.ConditionalSelect(nan, x, y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Exp(Vector256<float> x)
    {
        var nan = ~Vector256.Equals(x, x);
        var tooSmall = Vector256.LessThan(x, Vector256.Create(Lo));
        var v = Vector256.Min(Vector256.Max(x, Vector256.Create(Lo)), Vector256.Create(Hi));
        var fx = Vector256.Floor(Vector256.FusedMultiplyAdd(v, Vector256.Create(Log2E), Vector256.Create(0.5f)));
        v = Vector256.FusedMultiplyAdd(fx, Vector256.Create(-C1), v);
        v = Vector256.FusedMultiplyAdd(fx, Vector256.Create(-C2), v);
        var z = v * v;
        var y = Vector256.FusedMultiplyAdd(Vector256.Create(P0), v, Vector256.Create(P1));
        y = Vector256.FusedMultiplyAdd(y, v, Vector256.Create(P2));
        y = Vector256.FusedMultiplyAdd(y, v, Vector256.Create(P3));
        y = Vector256.FusedMultiplyAdd(y, v, Vector256.Create(P4));
        y = Vector256.FusedMultiplyAdd(y, v, Vector256.Create(P5));
        y = Vector256.FusedMultiplyAdd(y, z, v + Vector256<float>.One);
        var pow2n = (Vector256.ConvertToInt32(fx) + Vector256.Create(127)) << 23;
        y *= pow2n.AsSingle();
        y = Vector256.ConditionalSelect(tooSmall, Vector256<float>.Zero, y);
        return Vector256.ConditionalSelect(nan, x, y);
    }

    /// <summary>y[i] = exp(x[i] − shift); returns Σ y (pairs of vector accumulators, then the scalar tail).</summary>
    public static float ExpShiftedSum(ReadOnlySpan<float> x, float shift, Span<float> y)
    {
        ref float xs = ref MemoryMarshal.GetReference(x);
        ref float ys = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var s = Vector512.Create(shift);
            Vector512<float> a0 = default, a1 = default;
            for (; i + 32 <= n; i += 32)
            {
                var e0 = Exp(Vector512.LoadUnsafe(ref xs, (nuint)i) - s);
                var e1 = Exp(Vector512.LoadUnsafe(ref xs, (nuint)(i + 16)) - s);
                e0.StoreUnsafe(ref ys, (nuint)i); e1.StoreUnsafe(ref ys, (nuint)(i + 16));
                a0 += e0; a1 += e1;
            }
            for (; i + 16 <= n; i += 16)
            {
                var e = Exp(Vector512.LoadUnsafe(ref xs, (nuint)i) - s);
                e.StoreUnsafe(ref ys, (nuint)i);
                a0 += e;
            }
            sum = Vector512.Sum(a0 + a1);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var s = Vector256.Create(shift);
            Vector256<float> a0 = default;
            for (; i + 8 <= n; i += 8)
            {
                var e = Exp(Vector256.LoadUnsafe(ref xs, (nuint)i) - s);
                e.StoreUnsafe(ref ys, (nuint)i);
                a0 += e;
            }
            sum = Vector256.Sum(a0);
        }
        for (; i < n; i++) { float e = MathF.Exp(x[i] - shift); y[i] = e; sum += e; }
        return sum;
    }
}
