// bfloat16: the top 16 bits of an IEEE fp32. The BCL has System.Half but no bfloat16, so Kiln keeps its own.
using System.Runtime.CompilerServices;

namespace Kiln;

public readonly struct BFloat16 : IEquatable<BFloat16>
{
    public readonly ushort Bits;
    private BFloat16(ushort bits) => Bits = bits;

    public static BFloat16 FromBits(ushort bits) => new(bits);

    /// <summary>Round to nearest even, as PyTorch and CUDA do; NaN stays a (quiet) NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static BFloat16 FromSingle(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7FFF_FFFFu) > 0x7F80_0000u) return new((ushort)((u >> 16) | 0x40));
        uint rounding = 0x7FFFu + ((u >> 16) & 1u);
        return new((ushort)((u + rounding) >> 16));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float ToSingle() => BitConverter.UInt32BitsToSingle((uint)Bits << 16);

    public static explicit operator BFloat16(float f) => FromSingle(f);
    public static explicit operator float(BFloat16 b) => b.ToSingle();
    public bool Equals(BFloat16 other) => Bits == other.Bits;
    public override bool Equals(object? obj) => obj is BFloat16 b && Equals(b);
    public override int GetHashCode() => Bits;
    public override string ToString() => ToSingle().ToString();
}
