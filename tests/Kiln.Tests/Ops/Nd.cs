// Test-side N-d array of doubles (row-major) and the naive loops the op tests compare Kiln against. Nothing
// here calls a Kiln op: references are computed independently, in double, element by element.
namespace Kiln.Tests.Ops;

internal sealed class Nd
{
    public readonly int[] Shape;
    public readonly double[] Data;

    public Nd(int[] shape, double[] data)
    {
        if (Count(shape) != data.Length) throw new ArgumentException($"Nd: {data.Length} values for shape [{string.Join(",", shape)}]");
        Shape = (int[])shape.Clone();
        Data = data;
    }

    public int Rank => Shape.Length;
    public int Numel => Data.Length;

    public static int Count(int[] shape) { int n = 1; foreach (int d in shape) n *= d; return n; }

    public static int[] StridesOf(int[] shape)
    {
        var s = new int[shape.Length];
        int acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
        return s;
    }

    public static int Flat(int[] shape, int[] idx)
    {
        int f = 0;
        for (int i = 0; i < shape.Length; i++) f = f * shape[i] + idx[i];
        return f;
    }

    /// <summary>Multi-index of flat position <paramref name="flat"/> in row-major order.</summary>
    public static int[] Unflat(int[] shape, int flat)
    {
        var idx = new int[shape.Length];
        for (int i = shape.Length - 1; i >= 0; i--) { idx[i] = flat % shape[i]; flat /= shape[i]; }
        return idx;
    }

    public double At(params int[] idx) => Data[Flat(Shape, idx)];

    /// <summary>Builds an array from f(index); the index array is reused between calls (copy it to keep it).</summary>
    public static Nd Of(int[] shape, Func<int[], double> f)
    {
        var d = new double[Count(shape)];
        var idx = new int[shape.Length];
        for (int i = 0; i < d.Length; i++)
        {
            d[i] = f(idx);
            for (int k = shape.Length - 1; k >= 0; k--) { if (++idx[k] < shape[k]) break; idx[k] = 0; }
        }
        return new Nd(shape, d);
    }

    public static Nd Random(int[] shape, int seed, double lo = -2, double hi = 2)
    {
        var r = new Random(seed);
        var d = new double[Count(shape)];
        for (int i = 0; i < d.Length; i++) d[i] = lo + (hi - lo) * r.NextDouble();
        return new Nd(shape, d);
    }

    /// <summary>Random integers in [lo, hi] stored as doubles.</summary>
    public static Nd RandomInts(int[] shape, int seed, int lo, int hi)
    {
        var r = new Random(seed);
        var d = new double[Count(shape)];
        for (int i = 0; i < d.Length; i++) d[i] = r.Next(lo, hi + 1);
        return new Nd(shape, d);
    }

    public Nd Map(Func<double, double> f) => new(Shape, Data.Select(f).ToArray());

    // ---------- broadcasting (NumPy's rule, written out independently of Kiln) ----------

    public static int[]? BroadcastShape(int[] a, int[] b)
    {
        int n = Math.Max(a.Length, b.Length);
        var r = new int[n];
        for (int i = 0; i < n; i++)
        {
            // align from the right
            int ia = a.Length - n + i, ib = b.Length - n + i;
            int da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
            if (da != db && da != 1 && db != 1) return null;
            r[i] = da == 1 ? db : da;
        }
        return r;
    }

    /// <summary>Value of this array at an index of a shape it broadcasts to.</summary>
    public double AtBroadcast(int[] outIdx)
    {
        int off = outIdx.Length - Rank, f = 0;
        for (int i = 0; i < Rank; i++) f = f * Shape[i] + (Shape[i] == 1 ? 0 : outIdx[off + i]);
        return Data[f];
    }

    public static Nd Zip(Nd a, Nd b, Func<double, double, double> f)
    {
        var s = BroadcastShape(a.Shape, b.Shape) ?? throw new ArgumentException("Nd.Zip: incompatible shapes");
        return Of(s, i => f(a.AtBroadcast(i), b.AtBroadcast(i)));
    }

    public static Nd Zip3(Nd a, Nd b, Nd c, Func<double, double, double, double> f)
    {
        var s = BroadcastShape(BroadcastShape(a.Shape, b.Shape)!, c.Shape) ?? throw new ArgumentException("Nd.Zip3: incompatible shapes");
        return Of(s, i => f(a.AtBroadcast(i), b.AtBroadcast(i), c.AtBroadcast(i)));
    }

    public Nd ExpandTo(int[] shape) => Of(shape, AtBroadcast);

    // ---------- layout ----------

    public Nd Permute(params int[] perm)
    {
        var s = perm.Select(p => Shape[p]).ToArray();
        return Of(s, i =>
        {
            var src = new int[Rank];
            for (int k = 0; k < Rank; k++) src[perm[k]] = i[k];
            return At(src);
        });
    }

    /// <summary>Swaps the last two axes.</summary>
    public Nd T()
    {
        var p = Enumerable.Range(0, Rank).ToArray();
        (p[^1], p[^2]) = (p[^2], p[^1]);
        return Permute(p);
    }

    /// <summary>Python slice start:stop:step of one axis (bounds already valid, step positive).</summary>
    public Nd Slice(int axis, int start, int stop, int step = 1)
    {
        var picked = new List<int>();
        for (int k = start; k < stop; k += step) picked.Add(k);
        var s = (int[])Shape.Clone(); s[axis] = picked.Count;
        return Of(s, i => { var src = (int[])i.Clone(); src[axis] = picked[i[axis]]; return At(src); });
    }

    public Nd Reshape(params int[] shape) => new(shape, (double[])Data.Clone());

    // ---------- reductions ----------

    /// <summary>Applies <paramref name="f"/> to the values of each reduced group (in row-major order of the reduced axes).</summary>
    public Nd Reduce(int[] axes, bool keepDim, Func<List<double>, double> f)
    {
        var ax = axes.Select(a => a < 0 ? a + Rank : a).ToHashSet();
        var outFull = Shape.Select((d, k) => ax.Contains(k) ? 1 : d).ToArray();
        var groups = new List<double>[Count(outFull)];
        for (int g = 0; g < groups.Length; g++) groups[g] = new List<double>();
        for (int e = 0; e < Numel; e++)
        {
            var i = Unflat(Shape, e);
            var o = i.Select((v, k) => ax.Contains(k) ? 0 : v).ToArray();
            groups[Flat(outFull, o)].Add(Data[e]);
        }
        var vals = groups.Select(f).ToArray();
        var outShape = keepDim ? outFull : Shape.Where((_, k) => !ax.Contains(k)).ToArray();
        return new Nd(outShape, vals);
    }

    public static double Sum(List<double> v) { double s = 0; foreach (var x in v) s += x; return s; }
    public static double LogSumExp(IEnumerable<double> v)
    {
        double m = v.Max();
        if (double.IsInfinity(m)) return m;
        return m + Math.Log(v.Sum(x => Math.Exp(x - m)));
    }
    public static double Variance(List<double> v, int correction)
    {
        double mean = Sum(v) / v.Count;
        return v.Sum(x => (x - mean) * (x - mean)) / (v.Count - correction);
    }

    // ---------- dtypes ----------

    /// <summary>The value <paramref name="v"/> becomes when stored in <paramref name="dt"/> (round to nearest even).</summary>
    public static double RoundTo(double v, DType dt) => dt switch
    {
        DType.Float32 => (float)v,
        DType.Float64 => v,
        DType.BFloat16 => Bf16.ToDouble(Bf16.FromFloat((float)v)),
        DType.Float16 => (double)(Half)v,
        DType.Int32 => (int)Math.Truncate(v),
        DType.Int64 => (long)Math.Truncate(v),
        DType.Bool => v != 0 ? 1 : 0,
        _ => throw new ArgumentOutOfRangeException(nameof(dt)),
    };

    public Nd RoundTo(DType dt) => Map(v => RoundTo(v, dt));

    /// <summary>A Kiln leaf of dtype <paramref name="dt"/> holding these values (rounded to the dtype).</summary>
    public Tensor ToTensor(DType dt) => dt switch
    {
        DType.Float32 => Tensor.FromArray(Data.Select(v => (float)v).ToArray(), Shape),
        DType.Float64 => Tensor.FromArray((double[])Data.Clone(), Shape),
        DType.BFloat16 => Tensor.FromArray(Data.Select(v => BFloat16.FromBits(Bf16.FromFloat((float)v))).ToArray(), Shape),
        DType.Float16 => Tensor.FromArray(Data.Select(v => (Half)v).ToArray(), Shape),
        DType.Int32 => Tensor.FromArray(Data.Select(v => (int)v).ToArray(), Shape),
        DType.Int64 => Tensor.FromArray(Data.Select(v => (long)v).ToArray(), Shape),
        DType.Bool => Tensor.FromArray(Data.Select(v => v != 0).ToArray(), Shape),
        _ => throw new ArgumentOutOfRangeException(nameof(dt)),
    };

    /// <summary>Tolerance of a single op in <paramref name="dt"/> against a double reference on the same (rounded) inputs.</summary>
    public static double Tol(DType dt) => dt switch
    {
        DType.Float64 => 1e-12,
        DType.Float32 => 1e-5,
        DType.BFloat16 => 1e-2,
        DType.Float16 => 2e-3,
        _ => 0,
    };

    /// <summary>Asserts a Kiln tensor has this array's shape and values within tolerance.</summary>
    public static void AssertClose(Nd expected, Tensor actual, double tol, string what)
    {
        Assert.True(expected.Shape.SequenceEqual(actual.Shape),
            $"{what}: shape [{string.Join(", ", actual.Shape)}], expected [{string.Join(", ", expected.Shape)}]");
        Close.AssertAll(expected.Data, actual.ToArray<double>(), tol, what);
    }

    /// <summary>Kiln's shape spelling in messages: (2, 3), (4,), ().</summary>
    public static string Fmt(int[] shape) => "(" + string.Join(", ", shape) + (shape.Length == 1 ? ",)" : ")");
}

/// <summary>bfloat16 bits from the fp32 bit pattern, written out case by case (independent of Kiln's BFloat16).</summary>
internal static class Bf16
{
    public static ushort FromFloat(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((u >> 16) | 0x0040);    // keep sign and payload top, force quiet
        uint lower = u >> 16;                 // truncated candidate (same sign, magnitude rounded down)
        uint dropped = u & 0xFFFF;
        bool up = dropped > 0x8000 || (dropped == 0x8000 && (lower & 1) == 1);
        return (ushort)(up ? lower + 1 : lower);    // +1 on the magnitude carries into the exponent (up to inf)
    }

    public static double ToDouble(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
}

/// <summary>Special functions the BCL lacks, written for the reference (not Kiln's formulation).</summary>
internal static class RefMath
{
    /// <summary>erf to ~1e-15: Maclaurin series below 2.5, Lentz continued fraction of erfc above.</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        double ax = Math.Abs(x);
        double r;
        if (ax < 2.5)
        {
            // erf(x) = 2/√π Σ (−1)ⁿ x^(2n+1) / (n! (2n+1))
            double term = ax, sum = ax;
            for (int n = 1; n < 200; n++)
            {
                term *= -ax * ax / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-18 * Math.Abs(sum)) break;
            }
            r = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else if (ax > 27) r = 1;
        else
        {
            // erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
            const double tiny = 1e-300;
            double f = ax, c = ax, d = 0;
            for (int k = 1; k < 500; k++)
            {
                double a = k / 2.0;
                d = ax + a * d; if (Math.Abs(d) < tiny) d = tiny; d = 1 / d;
                c = ax + a / c; if (Math.Abs(c) < tiny) c = tiny;
                double delta = c * d;
                f *= delta;
                if (Math.Abs(delta - 1) < 1e-17) break;
            }
            r = 1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f;
        }
        return x < 0 ? -r : r;
    }

    public static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));
    public static double GeluErf(double x) => 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));
    /// <summary>d/dx GeluTanh, written from sech² = 1 − tanh²: ½(1 + tanh u) + ½x·sech²(u)·u′, u = √(2/π)(x + 0.044715x³).</summary>
    public static double GeluTanhGrad(double x)
    {
        double c = Math.Sqrt(2 / Math.PI), u = c * (x + 0.044715 * x * x * x), sech = 1 / Math.Cosh(u);
        return 0.5 * (1 + Math.Tanh(u)) + 0.5 * x * sech * sech * c * (1 + 3 * 0.044715 * x * x);
    }

    public static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}
