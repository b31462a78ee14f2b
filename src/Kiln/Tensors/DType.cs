// Element types Kiln stores, and the facts about each that shape rules and kernels need.
namespace Kiln;

public enum DType { Float32, Float64, BFloat16, Float16, Int32, Int64, Bool }

public static class DTypeExtensions
{
    public static int SizeInBytes(this DType t) => t switch
    {
        DType.Float32 or DType.Int32 => 4,
        DType.Float64 or DType.Int64 => 8,
        DType.BFloat16 or DType.Float16 => 2,
        DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static bool IsFloat(this DType t) => t is DType.Float32 or DType.Float64 or DType.BFloat16 or DType.Float16;
    public static bool IsInteger(this DType t) => t is DType.Int32 or DType.Int64;

    /// <summary>The type CPU kernels compute in: reduced-precision floats are widened to fp32.</summary>
    public static DType ComputeType(this DType t) => t is DType.BFloat16 or DType.Float16 ? DType.Float32 : t;

    public static string ShortName(this DType t) => t switch
    {
        DType.Float32 => "f32", DType.Float64 => "f64", DType.BFloat16 => "bf16", DType.Float16 => "f16",
        DType.Int32 => "i32", DType.Int64 => "i64", DType.Bool => "bool", _ => t.ToString(),
    };

    /// <summary>Result type of a binary op between two dtypes (NumPy-like promotion, floats win).</summary>
    public static DType Promote(DType a, DType b)
    {
        if (a == b) return a;
        int Rank(DType t) => t switch
        {
            DType.Bool => 0, DType.Int32 => 1, DType.Int64 => 2, DType.Float16 => 3, DType.BFloat16 => 3,
            DType.Float32 => 4, DType.Float64 => 5, _ => 0,
        };
        if ((a, b) is (DType.BFloat16, DType.Float16) or (DType.Float16, DType.BFloat16)) return DType.Float32;
        return Rank(a) >= Rank(b) ? a : b;
    }
}
