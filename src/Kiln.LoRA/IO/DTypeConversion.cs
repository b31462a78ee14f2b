namespace Kiln.LoRA.IO;

internal static class DTypeConversion
{
    /// <summary>
    /// <paramref name="t"/> as a realised leaf of dtype <paramref name="to"/>. Only conversions a caller can
    /// ask for without surprise are allowed: float to float (e.g. a bf16 file loaded as fp32) and widening
    /// integers; anything else would silently lose or invent information.
    /// </summary>
    public static Tensor Convert(Tensor t, DType? to, string what)
    {
        if (to is not { } target || target == t.DType) return t;
        bool allowed = (t.DType.IsFloat() && target.IsFloat()) || (t.DType == DType.Int32 && target == DType.Int64);
        if (!allowed)
            throw new ArgumentException($"{what} is {t.DType}; converting it to {target} is not supported (only float to float and Int32 to Int64)");
        using (t)
        using (var cast = t.Cast(target))
            return cast.Detach();   // a leaf: the loaded weight carries no graph history
    }
}
