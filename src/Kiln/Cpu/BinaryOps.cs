// Row operators for the broadcasting binary engine: arithmetic via TensorPrimitives, comparisons to bool.
using System.Numerics;
using System.Numerics.Tensors;

namespace Kiln.Cpu;

internal struct AddRow<T> : IBinaryRow<T, T> where T : INumber<T>
{
    public static void VV(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Add(a, b, o);
    public static void VS(ReadOnlySpan<T> a, T b, Span<T> o) => TensorPrimitives.Add(a, b, o);
    public static void SV(T a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Add(b, a, o);
}

internal struct SubRow<T> : IBinaryRow<T, T> where T : INumber<T>
{
    public static void VV(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Subtract(a, b, o);
    public static void VS(ReadOnlySpan<T> a, T b, Span<T> o) => TensorPrimitives.Subtract(a, b, o);
    public static void SV(T a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Subtract(a, b, o);
}

internal struct MulRow<T> : IBinaryRow<T, T> where T : INumber<T>
{
    public static void VV(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Multiply(a, b, o);
    public static void VS(ReadOnlySpan<T> a, T b, Span<T> o) => TensorPrimitives.Multiply(a, b, o);
    public static void SV(T a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Multiply(b, a, o);
}

internal struct DivRow<T> : IBinaryRow<T, T> where T : INumber<T>
{
    public static void VV(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Divide(a, b, o);
    public static void VS(ReadOnlySpan<T> a, T b, Span<T> o) => TensorPrimitives.Divide(a, b, o);
    public static void SV(T a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Divide(a, b, o);
}

internal struct MaxRow<T> : IBinaryRow<T, T> where T : INumber<T>
{
    public static void VV(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Max(a, b, o);
    public static void VS(ReadOnlySpan<T> a, T b, Span<T> o) => TensorPrimitives.Max(a, b, o);
    public static void SV(T a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Max(b, a, o);
}

internal struct MinRow<T> : IBinaryRow<T, T> where T : INumber<T>
{
    public static void VV(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Min(a, b, o);
    public static void VS(ReadOnlySpan<T> a, T b, Span<T> o) => TensorPrimitives.Min(a, b, o);
    public static void SV(T a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Min(b, a, o);
}

internal struct PowRow<T> : IBinaryRow<T, T> where T : IPowerFunctions<T>, IFloatingPointIeee754<T>
{
    public static void VV(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Pow(a, b, o);
    public static void VS(ReadOnlySpan<T> a, T b, Span<T> o) => TensorPrimitives.Pow(a, b, o);
    public static void SV(T a, ReadOnlySpan<T> b, Span<T> o) => TensorPrimitives.Pow(a, b, o);
}

internal enum Compare { Eq, Ne, Lt, Le, Gt, Ge }

internal interface ICompare { static abstract Compare Kind { get; } }
internal struct CmpEq : ICompare { public static Compare Kind => Compare.Eq; }
internal struct CmpNe : ICompare { public static Compare Kind => Compare.Ne; }
internal struct CmpLt : ICompare { public static Compare Kind => Compare.Lt; }
internal struct CmpLe : ICompare { public static Compare Kind => Compare.Le; }
internal struct CmpGt : ICompare { public static Compare Kind => Compare.Gt; }
internal struct CmpGe : ICompare { public static Compare Kind => Compare.Ge; }

internal struct CompareRow<T, TC> : IBinaryRow<T, bool> where T : INumber<T> where TC : ICompare
{
    private static bool F(T a, T b) => TC.Kind switch
    {
        Compare.Eq => a == b, Compare.Ne => a != b, Compare.Lt => a < b,
        Compare.Le => a <= b, Compare.Gt => a > b, _ => a >= b,
    };
    public static void VV(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<bool> o) { for (int i = 0; i < o.Length; i++) o[i] = F(a[i], b[i]); }
    public static void VS(ReadOnlySpan<T> a, T b, Span<bool> o) { for (int i = 0; i < o.Length; i++) o[i] = F(a[i], b); }
    public static void SV(T a, ReadOnlySpan<T> b, Span<bool> o) { for (int i = 0; i < o.Length; i++) o[i] = F(a, b[i]); }
}

/// <summary>Dispatch of the binary engine on dtype for each op family.</summary>
internal static class BinaryKernels
{
    public static Runtime.Realised Arith<TF, TD, TI, TL>(Runtime.Realised a, Runtime.Realised b, Graph.Node n)
        where TF : IBinaryRow<float, float> where TD : IBinaryRow<double, double>
        where TI : IBinaryRow<int, int> where TL : IBinaryRow<long, long> => a.DType switch
    {
        DType.Float32 => Elementwise.Binary<float, float, TF>(a, b, n.Shape, DType.Float32),
        DType.Float64 => Elementwise.Binary<double, double, TD>(a, b, n.Shape, DType.Float64),
        DType.Int32 => Elementwise.Binary<int, int, TI>(a, b, n.Shape, DType.Int32),
        DType.Int64 => Elementwise.Binary<long, long, TL>(a, b, n.Shape, DType.Int64),
        _ => throw new NotSupportedException($"{n.Op.Name}: dtype {a.DType.ShortName()} has no CPU kernel"),
    };

    public static Runtime.Realised Cmp<TC>(Runtime.Realised a, Runtime.Realised b, Graph.Node n) where TC : ICompare => a.DType switch
    {
        DType.Float32 => Elementwise.Binary<float, bool, CompareRow<float, TC>>(a, b, n.Shape, DType.Bool),
        DType.Float64 => Elementwise.Binary<double, bool, CompareRow<double, TC>>(a, b, n.Shape, DType.Bool),
        DType.Int32 => Elementwise.Binary<int, bool, CompareRow<int, TC>>(a, b, n.Shape, DType.Bool),
        DType.Int64 => Elementwise.Binary<long, bool, CompareRow<long, TC>>(a, b, n.Shape, DType.Bool),
        _ => throw new NotSupportedException($"{n.Op.Name}: dtype {a.DType.ShortName()} has no CPU kernel"),
    };
}
