// Dtype conversion of dense spans: fp32 <-> bf16/f16 (the widen/narrow around fp32 kernels) and the
// general element-wise cast used by the cast op and by ToArray.
using System.Numerics.Tensors;
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class Convert
{
    public static void ToSingle(ReadOnlySpan<BFloat16> src, Span<float> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = src[i].ToSingle();
    }

    public static void FromSingle(ReadOnlySpan<float> src, Span<BFloat16> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = BFloat16.FromSingle(src[i]);
    }

    /// <summary>Dense value of <paramref name="v"/> converted to <paramref name="to"/>.</summary>
    public static Realised Cast(Realised input, DType to)
    {
        var v = Strided.Contiguous(input);
        if (v.DType == to) return v;
        var o = CastDense(v, to);
        Strided.Done(v, input);
        return o;
    }

    private static Realised CastDense(Realised v, DType to)
    {
        long n = v.Numel;
        var b = BufferPool.Rent(to, n);
        var o = Realised.Contiguous(b, v.Shape);
        switch (v.DType, to)
        {
            case (DType.BFloat16, DType.Float32): ToSingle(v.Span<BFloat16>(), o.Span<float>()); return o;
            case (DType.Float32, DType.BFloat16): FromSingle(v.Span<float>(), o.Span<BFloat16>()); return o;
            case (DType.Float16, DType.Float32): TensorPrimitives.ConvertToSingle(v.Span<Half>(), o.Span<float>()); return o;
            case (DType.Float32, DType.Float16): TensorPrimitives.ConvertToHalf(v.Span<float>(), o.Span<Half>()); return o;
        }
        // General path through double (exact for every value of every supported type except |int64| > 2^53).
        if (v.DType == DType.Int64 && to == DType.Int32) { var s = v.Span<long>(); var d = o.Span<int>(); for (int i = 0; i < s.Length; i++) d[i] = (int)s[i]; return o; }
        if (v.DType == DType.Int32 && to == DType.Int64) { var s = v.Span<int>(); var d = o.Span<long>(); for (int i = 0; i < s.Length; i++) d[i] = s[i]; return o; }
        var tmp = new double[n];
        ReadDoubles(v, tmp);
        WriteDoubles(tmp, o);
        return o;
    }

    public static void ReadDoubles(Realised dense, Span<double> dst)
    {
        switch (dense.DType)
        {
            case DType.Float32: { var s = dense.Span<float>(); for (int i = 0; i < s.Length; i++) dst[i] = s[i]; break; }
            case DType.Float64: dense.Span<double>().CopyTo(dst); break;
            case DType.BFloat16: { var s = dense.Span<BFloat16>(); for (int i = 0; i < s.Length; i++) dst[i] = s[i].ToSingle(); break; }
            case DType.Float16: { var s = dense.Span<Half>(); for (int i = 0; i < s.Length; i++) dst[i] = (double)s[i]; break; }
            case DType.Int32: { var s = dense.Span<int>(); for (int i = 0; i < s.Length; i++) dst[i] = s[i]; break; }
            case DType.Int64: { var s = dense.Span<long>(); for (int i = 0; i < s.Length; i++) dst[i] = s[i]; break; }
            case DType.Bool: { var s = dense.Span<bool>(); for (int i = 0; i < s.Length; i++) dst[i] = s[i] ? 1 : 0; break; }
        }
    }

    /// <summary>Writes doubles into a dense value; float to integer truncates toward zero (as C and PyTorch do).</summary>
    public static void WriteDoubles(ReadOnlySpan<double> src, Realised dense)
    {
        switch (dense.DType)
        {
            case DType.Float32: { var d = dense.Span<float>(); for (int i = 0; i < d.Length; i++) d[i] = (float)src[i]; break; }
            case DType.Float64: src.CopyTo(dense.Span<double>()); break;
            case DType.BFloat16: { var d = dense.Span<BFloat16>(); for (int i = 0; i < d.Length; i++) d[i] = BFloat16.FromSingle((float)src[i]); break; }
            case DType.Float16: { var d = dense.Span<Half>(); for (int i = 0; i < d.Length; i++) d[i] = (Half)src[i]; break; }
            case DType.Int32: { var d = dense.Span<int>(); for (int i = 0; i < d.Length; i++) d[i] = (int)Math.Truncate(src[i]); break; }
            case DType.Int64: { var d = dense.Span<long>(); for (int i = 0; i < d.Length; i++) d[i] = (long)Math.Truncate(src[i]); break; }
            case DType.Bool: { var d = dense.Span<bool>(); for (int i = 0; i < d.Length; i++) d[i] = src[i] != 0; break; }
        }
    }
}
