// Reading realised values back into user arrays, converting dtype where the caller asks for another type.
namespace Kiln.Runtime;

internal static class DataReader
{
    public static T[] Read<T>(Realised v) where T : unmanaged
    {
        if (v.Buffer.OnDevice)
        {
            var host = Evaluator.Transfer(v, Device.Cpu);
            try { return Read<T>(host); } finally { Evaluator.Release(host); }
        }
        var want = DTypeOf<T>();
        var dense = Cpu.Convert.Cast(v, want);
        var r = new T[dense.Numel];
        dense.Span<T>().CopyTo(r);
        Cpu.Strided.Done(dense, v);   // also keeps both alive until the copy is done (spans do not)
        GC.KeepAlive(v);
        return r;
    }

    public static DType DTypeOf<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? DType.Float32 :
        typeof(T) == typeof(double) ? DType.Float64 :
        typeof(T) == typeof(BFloat16) ? DType.BFloat16 :
        typeof(T) == typeof(Half) ? DType.Float16 :
        typeof(T) == typeof(int) ? DType.Int32 :
        typeof(T) == typeof(long) ? DType.Int64 :
        typeof(T) == typeof(bool) ? DType.Bool :
        throw new NotSupportedException($"element type {typeof(T).Name} is not a Kiln dtype (use float, double, BFloat16, Half, int, long or bool)");
}
