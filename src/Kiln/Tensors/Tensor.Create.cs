// Creating tensors from data: arrays, fills, ranges and seeded random draws. These are leaves that hold
// their value from the start.
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln;

public sealed partial class Tensor
{
    private static int[] CheckShape(ReadOnlySpan<int> shape, string op)
    {
        foreach (int d in shape)
            if (d < 0) throw new ArgumentException($"{op}: shape {Shapes.Format(shape)} has a negative dimension");
        if (Shapes.Numel(shape) > Array.MaxLength)
            throw new ArgumentException($"{op}: shape {Shapes.Format(shape)} has {Shapes.Numel(shape)} elements; a CPU tensor holds at most {Array.MaxLength}");
        return shape.ToArray();
    }

    /// <summary>A tensor holding a copy of <paramref name="data"/> with the given shape (default: 1-D).</summary>
    public static Tensor FromArray<T>(T[] data, int[]? shape = null, Device? device = null) where T : unmanaged =>
        FromData<T>(data, shape, device, "from_array");

    /// <summary>A tensor holding a copy of <paramref name="data"/> with the given shape (default: 1-D).</summary>
    public static Tensor FromSpan<T>(ReadOnlySpan<T> data, int[]? shape = null, Device? device = null) where T : unmanaged =>
        FromData(data, shape, device, "from_span");

    private static Tensor FromData<T>(ReadOnlySpan<T> data, int[]? shape, Device? device, string op) where T : unmanaged
    {
        var s = CheckShape(shape ?? [data.Length], op);
        if (Shapes.Numel(s) != data.Length)
            throw new ArgumentException($"{op}: {data.Length} values cannot fill shape {Shapes.Format(s)} ({Shapes.Numel(s)} elements)");
        var b = new Runtime.Buffer(DataReader.DTypeOf<T>(), data.ToArray(), data.Length);
        return FromRealised(Realised.Contiguous(b, s), device ?? Device.Default);
    }

    public static Tensor Scalar(double value, DType dtype = DType.Float32, Device? device = null) => Full([], value, dtype, device);

    public static Tensor Full(int[] shape, double value, DType dtype = DType.Float32, Device? device = null)
    {
        var s = CheckShape(shape, "full");
        var b = new Runtime.Buffer(dtype, Runtime.Buffer.NewArray(dtype, Math.Max(Shapes.Numel(s), 1)), Shapes.Numel(s));
        var r = Realised.Contiguous(b, s);
        if (BitConverter.DoubleToInt64Bits(value) != 0)   // -0.0 must be written too
        {
            var vals = new double[r.Numel];
            Array.Fill(vals, value);
            Cpu.Convert.WriteDoubles(vals, r);
        }
        var dev = device ?? Device.Default;
        return new Tensor(new Node(OpTable.Constant, [], new FillAttrs(value), r.Shape, dtype, dev, OnDevice(r, dev)));
    }

    public static Tensor Zeros(int[] shape, DType dtype = DType.Float32, Device? device = null) => Full(shape, 0, dtype, device);
    public static Tensor Ones(int[] shape, DType dtype = DType.Float32, Device? device = null) => Full(shape, 1, dtype, device);
    public static Tensor ZerosLike(Tensor t) => Zeros(t.ShapeArray, t.DType, t.Device);
    public static Tensor OnesLike(Tensor t) => Ones(t.ShapeArray, t.DType, t.Device);

    /// <summary>start, start+step, ... (< stop for positive step, > stop for negative).</summary>
    public static Tensor Arange(double start, double stop, double step = 1, DType dtype = DType.Int64, Device? device = null)
    {
        if (step == 0) throw new ArgumentOutOfRangeException(nameof(step), "arange: step must not be 0");
        long n = Math.Max(0, (long)Math.Ceiling((stop - start) / step));
        var vals = new double[n];
        for (long i = 0; i < n; i++) vals[i] = start + i * step;
        return FromDoubles(vals, [(int)n], dtype, device, "arange");
    }

    /// <summary>Normal(mean, std) draws, reproducible for a given seed on every machine.</summary>
    public static Tensor RandomNormal(int[] shape, int seed, double mean = 0, double std = 1, DType dtype = DType.Float32, Device? device = null)
    {
        var s = CheckShape(shape, "random_normal");
        var rng = new SplitMix64((ulong)seed);
        var vals = new double[Shapes.Numel(s)];
        for (long i = 0; i < vals.Length; i += 2)
        {
            // Box-Muller: two independent normals from two uniforms in (0, 1].
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double r = Math.Sqrt(-2 * Math.Log(u1));
            vals[i] = mean + std * r * Math.Cos(2 * Math.PI * u2);
            if (i + 1 < vals.Length) vals[i + 1] = mean + std * r * Math.Sin(2 * Math.PI * u2);
        }
        return FromDoubles(vals, s, dtype, device, "random_normal");
    }

    /// <summary>Uniform draws in [low, high), reproducible for a given seed.</summary>
    public static Tensor RandomUniform(int[] shape, int seed, double low = 0, double high = 1, DType dtype = DType.Float32, Device? device = null)
    {
        var s = CheckShape(shape, "random_uniform");
        var rng = new SplitMix64((ulong)seed);
        var vals = new double[Shapes.Numel(s)];
        for (long i = 0; i < vals.Length; i++) vals[i] = low + (high - low) * rng.NextDouble();
        return FromDoubles(vals, s, dtype, device, "random_uniform");
    }

    private static Tensor FromDoubles(double[] vals, int[] shape, DType dtype, Device? device, string kind)
    {
        var r = Realised.Contiguous(new Runtime.Buffer(dtype, Runtime.Buffer.NewArray(dtype, Math.Max(vals.Length, 1)), vals.Length), shape);
        Cpu.Convert.WriteDoubles(vals, r);
        return FromRealised(r, device ?? Device.Default, kind);
    }
}
