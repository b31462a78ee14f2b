// The op surface of Tensor: methods and C# operators, each a thin builder over one op-table row.
using Kiln.Graph;

namespace Kiln;

public enum GeluApproximation { None, Tanh }

public sealed partial class Tensor
{
    // ---------- unary ----------
    public Tensor Neg() => Apply(OpTable.Neg, null, this);
    public Tensor Abs() => Apply(OpTable.Abs, null, this);
    public Tensor Exp() => Apply(OpTable.Exp, null, this);
    public Tensor Log() => Apply(OpTable.Log, null, this);
    public Tensor Sqrt() => Apply(OpTable.Sqrt, null, this);
    public Tensor Rsqrt() => Apply(OpTable.Rsqrt, null, this);
    public Tensor Sin() => Apply(OpTable.Sin, null, this);
    public Tensor Cos() => Apply(OpTable.Cos, null, this);
    public Tensor Tanh() => Apply(OpTable.Tanh, null, this);
    public Tensor Sigmoid() => Apply(OpTable.Sigmoid, null, this);
    public Tensor Relu() => Apply(OpTable.Relu, null, this);
    public Tensor Silu() => Apply(OpTable.Silu, null, this);
    public Tensor Square() => Apply(OpTable.Square, null, this);
    public Tensor Erf() => Apply(OpTable.Erf, null, this);
    public Tensor Gelu(GeluApproximation approximate = GeluApproximation.None) =>
        Apply(approximate == GeluApproximation.Tanh ? OpTable.GeluTanh : OpTable.GeluErf, null, this);

    public Tensor Cast(DType to) => to == DType ? this : Apply(OpTable.Cast, new DTypeAttrs(to), this);

    // ---------- binary ----------
    public Tensor Add(Tensor other) => Ops.Binary(OpTable.Add, this, other);
    public Tensor Sub(Tensor other) => Ops.Binary(OpTable.Sub, this, other);
    public Tensor Mul(Tensor other) => Ops.Binary(OpTable.Mul, this, other);
    /// <summary>True division, as torch.div: integer operands are divided as float32 (so 7 / 2 = 3.5, x / 0 = ±inf).</summary>
    public Tensor Div(Tensor other) => Ops.Div(this, other);
    /// <summary>Matrix product with NumPy rules: batch axes broadcast; a 1-D operand is a row (left) or column (right) vector.</summary>
    public Tensor MatMul(Tensor other)
    {
        if (Rank == 0 || other.Rank == 0)
            throw new ArgumentException($"matmul: operands must have at least 1 axis, got shapes {Shapes.Format(ShapeArray)} and {Shapes.Format(other.ShapeArray)}");
        var a = Rank == 1 ? Unsqueeze(0) : this;
        var b = other.Rank == 1 ? other.Unsqueeze(-1) : other;
        var r = Ops.Binary(OpTable.MatMul, a, b);
        if (other.Rank == 1) r = r.Squeeze(-1);
        if (Rank == 1) r = r.Squeeze(-1 - (other.Rank == 1 ? 0 : 1));
        return r;
    }

    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);
    public static Tensor operator -(Tensor a) => a.Neg();
    public static Tensor operator +(Tensor a, double b) => a.Add(a.ScalarLike(b));
    public static Tensor operator +(double a, Tensor b) => b.ScalarLike(a).Add(b);
    public static Tensor operator -(Tensor a, double b) => a.Sub(a.ScalarLike(b));
    public static Tensor operator -(double a, Tensor b) => b.ScalarLike(a).Sub(b);
    public static Tensor operator *(Tensor a, double b) => a.Mul(a.ScalarLike(b));
    public static Tensor operator *(double a, Tensor b) => b.ScalarLike(a).Mul(b);
    public static Tensor operator /(Tensor a, double b) => a.AsDividend().Div(a.AsDividend().ScalarLike(b));
    public static Tensor operator /(double a, Tensor b) => b.AsDividend().ScalarLike(a).Div(b);

    private Tensor AsDividend() => DType.IsFloat() ? this : Cast(DType.Float32);
    public static Tensor operator <(Tensor a, Tensor b) => Ops.Binary(OpTable.Lt, a, b);
    public static Tensor operator >(Tensor a, Tensor b) => Ops.Binary(OpTable.Gt, a, b);
    public static Tensor operator <=(Tensor a, Tensor b) => Ops.Binary(OpTable.Le, a, b);
    public static Tensor operator >=(Tensor a, Tensor b) => Ops.Binary(OpTable.Ge, a, b);
    public static Tensor operator <(Tensor a, double b) => a < a.ScalarLike(b);
    public static Tensor operator >(Tensor a, double b) => a > a.ScalarLike(b);
    public static Tensor operator <=(Tensor a, double b) => a <= a.ScalarLike(b);
    public static Tensor operator >=(Tensor a, double b) => a >= a.ScalarLike(b);

    /// <summary>A 0-d constant of this tensor's dtype and device (scalars never promote the tensor's dtype).</summary>
    internal Tensor ScalarLike(double v)
    {
        bool exact = DType switch
        {
            DType.Int32 => v == Math.Truncate(v) && v >= int.MinValue && v <= int.MaxValue,
            DType.Int64 => v == Math.Truncate(v) && Math.Abs(v) <= 9.007199254740992e15,
            DType.Bool => v is 0 or 1,
            _ => true,
        };
        if (!exact)
            throw new ArgumentException($"scalar {v} cannot be combined with a {DType.ShortName()} tensor of shape {Shapes.Format(ShapeArray)} without changing its value; cast the tensor to a float dtype first");
        return new Tensor(ScalarNode(v, DType, Device));
    }

    /// <summary>
    /// The realised 0-d fill node of (value, dtype, device), shared by every `x * 0.5` that uses it: building an op
    /// with a scalar then allocates no constant (and uploads none to an accelerator), and a graph's repeated scalars
    /// are one input slot. Such nodes are never handed to users (who could dispose them); the cache stops growing at
    /// <see cref="MaxCachedScalars"/> distinct scalars (a value that changes every step belongs in a data leaf).
    /// </summary>
    private static Node ScalarNode(double v, DType dtype, Device device)
    {
        var key = (BitConverter.DoubleToInt64Bits(v), dtype, device);
        if (CachedScalars.TryGetValue(key, out var node)) return node;
        node = Full([], v, dtype, device).Node;
        return CachedScalars.Count < MaxCachedScalars ? CachedScalars.GetOrAdd(key, node) : node;
    }

    private const int MaxCachedScalars = 4096;
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(long, DType, Device), Node> CachedScalars = new();

    // ---------- reductions ----------
    private AxesAttrs AxesOf(string op, int[]? axes, bool keepDim) =>
        new(axes is null ? Enumerable.Range(0, Rank).ToArray() : Shapes.Axes(axes, Rank, op), keepDim);

    public Tensor Sum(int[]? axes = null, bool keepDim = false) => Apply(OpTable.Sum, AxesOf("sum", axes, keepDim), this);
    public Tensor Mean(int[]? axes = null, bool keepDim = false) => Apply(OpTable.Mean, AxesOf("mean", axes, keepDim), this);
    public Tensor Max(int[]? axes = null, bool keepDim = false) => Apply(OpTable.Max, AxesOf("max", axes, keepDim), this);
    public Tensor Min(int[]? axes = null, bool keepDim = false) => Apply(OpTable.Min, AxesOf("min", axes, keepDim), this);
    public Tensor LogSumExp(int[]? axes = null, bool keepDim = false) => Apply(OpTable.LogSumExp, AxesOf("logsumexp", axes, keepDim), this);
    public Tensor ArgMax(int axis, bool keepDim = false) => Apply(OpTable.ArgMax, AxesOf("argmax", [axis], keepDim), this);

    /// <summary>Variance with Bessel's correction by default (correction = 1), as torch.var.</summary>
    public Tensor Var(int[]? axes = null, bool keepDim = false, int correction = 1)
    {
        var a = AxesOf("var", axes, keepDim);
        return Apply(OpTable.Var, new VarAttrs(a.Axes, keepDim, correction), this);
    }

    // ---------- views ----------
    /// <summary>Same data, new shape; one axis may be -1 (inferred). No copy unless the strides forbid a view.</summary>
    public Tensor Reshape(params int[] shape)
    {
        // Built on every backward step (many times per training step): loops, not LINQ.
        int infer = Array.IndexOf(shape, -1);
        long known = 1, numel = Numel;
        bool negative = false;
        for (int i = 0; i < shape.Length; i++) if (i != infer) { known *= shape[i]; negative |= shape[i] < 0; }
        if (infer < 0 && !negative && known == numel && Shapes.Equal(shape, ShapeArray)) return this;
        var s = (int[])shape.Clone();
        if (infer >= 0 && known != 0 && numel % known == 0) s[infer] = (int)(numel / known);
        if (negative || (infer >= 0 && s[infer] < 0) || Shapes.Numel(s) != numel)
            throw new ArgumentException($"reshape: cannot view a tensor of shape {Shapes.Format(ShapeArray)} ({numel} elements) as {Shapes.Format(shape)}");
        return Shapes.Equal(s, ShapeArray) ? this : Apply(OpTable.Reshape, new ShapeAttrs(s), this);
    }

    public Tensor Permute(params int[] perm)
    {
        int rank = Rank;
        if (perm.Length != rank) throw new ArgumentException($"permute: {perm.Length} axes given for a tensor of rank {rank} (shape {Shapes.Format(ShapeArray)})");
        var p = new int[rank];
        Span<bool> seen = stackalloc bool[rank];
        bool identity = true;
        for (int i = 0; i < rank; i++)
        {
            int a = Shapes.Axis(perm[i], rank, "permute");
            if (seen[a]) throw new ArgumentException($"permute: [{string.Join(", ", perm)}] is not a permutation of {rank} axes");
            seen[a] = true; p[i] = a; identity &= a == i;
        }
        return identity ? this : Apply(OpTable.Permute, new ShapeAttrs(p), this);
    }

    public Tensor Transpose(int a, int b)
    {
        var p = new int[Rank];
        for (int i = 0; i < p.Length; i++) p[i] = i;
        int x = Shapes.Axis(a, Rank, "transpose"), y = Shapes.Axis(b, Rank, "transpose");
        (p[x], p[y]) = (p[y], p[x]);
        return Permute(p);
    }

    /// <summary>Swaps the last two axes (a matrix transpose; no copy).</summary>
    public Tensor T => Transpose(-1, -2);

    /// <summary>Python-style slice of one axis: negative bounds count from the end, bounds are clamped.</summary>
    public Tensor Slice(int axis, int start, int stop = int.MaxValue, int step = 1)
    {
        int a = Shapes.Axis(axis, Rank, "slice");
        if (step <= 0) throw new ArgumentOutOfRangeException(nameof(step), $"slice: step must be positive, got {step}");
        int n = ShapeArray[a];
        int s = Math.Clamp(start < 0 ? start + n : start, 0, n), e = Math.Clamp(stop < 0 ? stop + n : stop, 0, n);
        if (e < s) e = s;
        return s == 0 && e == n && step == 1 ? this : Apply(OpTable.Slice, new SliceAttrs(a, s, e, step), this);
    }

    public Tensor Expand(params int[] shape) => Shapes.Equal(shape, ShapeArray) ? this : Apply(OpTable.Expand_, new ShapeAttrs((int[])shape.Clone()), this);

    public Tensor Unsqueeze(int axis)
    {
        int a = Shapes.Axis(axis, Rank + 1, "unsqueeze");
        var s = ShapeArray.ToList(); s.Insert(a, 1);
        return Reshape([.. s]);
    }

    public Tensor Squeeze(int axis)
    {
        int a = Shapes.Axis(axis, Rank, "squeeze");
        if (ShapeArray[a] != 1) throw new ArgumentException($"squeeze: axis {axis} has size {ShapeArray[a]}, not 1 (shape {Shapes.Format(ShapeArray)})");
        var s = ShapeArray.ToList(); s.RemoveAt(a);
        return Reshape([.. s]);
    }

    public Tensor Flatten() => Reshape(-1);

    /// <summary>A flat tensor that packs several results one after another (multi-output kernels such as the
    /// fused backward passes), split back into views of the given shapes.</summary>
    internal Tensor[] Unpack(params int[][] shapes)
    {
        var parts = new Tensor[shapes.Length];
        int at = 0;
        for (int i = 0; i < shapes.Length; i++)
        {
            int n = (int)Shapes.Numel(shapes[i]);
            parts[i] = Slice(0, at, at + n).Reshape(shapes[i]);
            at += n;
        }
        return parts;
    }

    // ---------- structured ----------
    public Tensor Softmax(int axis = -1) => Apply(OpTable.Softmax, new IntAttrs(Shapes.Axis(axis, Rank, "softmax")), this);
    public Tensor LogSoftmax(int axis = -1) => Apply(OpTable.LogSoftmax, new IntAttrs(Shapes.Axis(axis, Rank, "log_softmax")), this);
    public Tensor IndexSelect(int axis, Tensor index) => Apply(OpTable.IndexSelect, new IntAttrs(Shapes.Axis(axis, Rank, "index_select")), this, index);

    /// <summary>Keeps the lower (or upper) triangle of the last two axes, offset by <paramref name="diagonal"/>; fills the rest.</summary>
    public Tensor Triangle(bool lower, int diagonal = 0, double fill = 0) => Apply(OpTable.Triangle, new TriangleAttrs(lower, diagonal, fill), this);

    /// <summary>Rotary position embedding over (..., seq, head_dim); positions start at <paramref name="offset"/>.</summary>
    public Tensor Rope(double theta = 10000, bool interleaved = false, int offset = 0) =>
        Apply(OpTable.Rope, new RopeAttrs(theta, interleaved, offset, Inverse: false), this);

    /// <summary>Rotary position embedding with the starting position given as an integer scalar tensor (data):
    /// graphs that differ only in the position share one cached plan.</summary>
    public Tensor Rope(Tensor offset, double theta = 10000, bool interleaved = false) =>
        Apply(OpTable.Rope, new RopeAttrs(theta, interleaved, 0, Inverse: false), this, offset);

    public Tensor Pad(int[] before, int[] after, double value = 0)
    {
        if (before.Length != Rank || after.Length != Rank || before.Concat(after).Any(p => p < 0))
            throw new ArgumentException($"pad: need {Rank} non-negative (before, after) amounts for shape {Shapes.Format(ShapeArray)}");
        return Apply(OpTable.Pad, new PadAttrs((int[])before.Clone(), (int[])after.Clone(), value), this);
    }
}
