// The CPU kernel of a fused elementwise group. By default the group's program is compiled at run time into
// one vector loop (FusedCodegen: every step on registers, one pass over memory), cached by structure.
// The interpreter below is the fallback (KILN_DISABLE=codegen, no dynamic code, programs too long to
// compile) and the compiled loop's reference twin: the output is walked in blocks of 1024 elements; each
// program step runs as one span operation over the block, with the temporaries in a per-thread scratch that
// stays in L1. So memory sees each input read once and the output written once, however long the chain.
// Reference twin of both: the same graph unfused (KILN_DISABLE=fusion); tests compare all three.
using System.Numerics;
using System.Numerics.Tensors;
using Kiln.Graph;
using Kiln.Runtime;
using U32 = Kiln.Cpu.UnaryKernels<float>;
using U64 = Kiln.Cpu.UnaryKernels<double>;

namespace Kiln.Cpu;

internal static class FusedKernel
{
    private const int Block = 1024;

    private static readonly Dictionary<OpDef, (SpanMap<float> F, SpanMap<double> D)> Unary = new()
    {
        [OpTable.Neg] = (U32.Neg, U64.Neg), [OpTable.Abs] = (U32.Abs, U64.Abs), [OpTable.Exp] = (U32.Exp, U64.Exp),
        [OpTable.Log] = (U32.Log, U64.Log), [OpTable.Sqrt] = (U32.Sqrt, U64.Sqrt), [OpTable.Rsqrt] = (U32.Rsqrt, U64.Rsqrt),
        [OpTable.Sin] = (U32.Sin, U64.Sin), [OpTable.Cos] = (U32.Cos, U64.Cos), [OpTable.Tanh] = (U32.Tanh, U64.Tanh),
        [OpTable.Sigmoid] = (U32.Sigmoid, U64.Sigmoid), [OpTable.Relu] = (U32.Relu, U64.Relu),
        [OpTable.Square] = (U32.Square, U64.Square), [OpTable.Silu] = (U32.Silu, U64.Silu),
        [OpTable.GeluTanh] = (U32.GeluTanh, U64.GeluTanh), [OpTable.GeluTanhGrad] = (U32.GeluTanhGrad, U64.GeluTanhGrad), [OpTable.GeluErf] = (U32.GeluErf, U64.GeluErf),
        [OpTable.Erf] = (U32.Erf, U64.Erf),
    };

    private static readonly HashSet<OpDef> Binary =
        [OpTable.Add, OpTable.Sub, OpTable.Mul, OpTable.Div, OpTable.Maximum, OpTable.Minimum, OpTable.Pow];

    public static bool Supports(OpDef op) => Unary.ContainsKey(op) || Binary.Contains(op);

    public static SpanMap<float> UnaryF32(OpDef op) => Unary[op].F;
    public static SpanMap<double> UnaryF64(OpDef op) => Unary[op].D;

    /// <summary>Test hook: true forces the compiled loop where it can be built, false the interpreter; null: KILN_DISABLE decides.</summary>
    internal static readonly AsyncLocal<bool?> CodegenOverride = new();

    private static bool UseCodegen => CodegenOverride.Value ?? !Settings.IsDisabled(Settings.Codegen);

    public static Realised Run(Realised[] inputs, Node node) => Run(inputs, (FusedProgram)node.Attrs!, node.Shape, node.DType, into: null);

    /// <summary>
    /// Runs <paramref name="program"/> over <paramref name="inputs"/> into a new buffer, or into
    /// <paramref name="into"/> (dense, of <paramref name="shape"/>), which may be one of the inputs: the program
    /// as a producer's epilogue, applied in place to the matmul's output (matmul_program).
    /// </summary>
    public static Realised Run(Realised[] inputs, FusedProgram program, int[] shape, DType dtype, Realised? into)
    {
        bool codegen = UseCodegen;
        return dtype switch
        {
            DType.Float32 => (codegen ? RunCompiled<float>(inputs, program, shape, dtype, into) : null) ?? Run<float>(inputs, program, shape, dtype, into, static op => Unary[op].F),
            DType.Float64 => (codegen ? RunCompiled<double>(inputs, program, shape, dtype, into) : null) ?? Run<double>(inputs, program, shape, dtype, into, static op => Unary[op].D),
            var t => throw new NotSupportedException($"fused_elementwise: dtype {t.ShortName()}"),
        };
    }

    /// <summary>
    /// Runs the program's compiled loop; null when it cannot be compiled. Dense inputs are read in place and
    /// scalar inputs broadcast in the loop; other inputs are gathered per block into scratch, as the interpreter does.
    /// </summary>
    private static Realised? RunCompiled<T>(Realised[] inputs, FusedProgram program, int[] shape, DType dtype, Realised? into) where T : unmanaged
    {
        var readers = inputs.Select(x => new InputReader(x, shape)).ToArray();
        // The output may be one of the inputs (run in place): the loop's last vector overlaps the one before it
        // and would recompute elements from results, so such a loop only gets whole vectors, and the remainder
        // goes through the padded-scratch path below (its inputs copied before anything is written).
        bool inPlace = into is not null && inputs.Any(x => ReferenceEquals(x.Buffer, into.Buffer));
        if (CompiledLoop<T>(program, readers) is not { } loop) return null;
        long n = Shapes.Numel(shape);
        var o = into ?? Realised.Contiguous(BufferPool.Rent(dtype, n), shape);
        var output = o.Buffer.RawArray<T>();
        int at = o.Buffer.Start + (int)o.Offset;   // the output's first element in that array
        bool direct = readers.All(r => r.Dense || r.Scalar);
        int lanes = FusedCodegen.Lanes<T>();
        int width = (int)Math.Min(Block, Math.Max(n, 1));
        int stride = Math.Max(width, lanes);      // scratch per input: a gathered block, or a padded short one
        long blocks = (n + width - 1) / width;
        Par.For(blocks, Par.ThreadsFor(n * program.Steps.Length, 1 << 14), (b0, b1) =>
        {
            var arrays = new T[inputs.Length][];
            var offsets = new int[inputs.Length];
            T[]? scratch = null;
            if (direct)   // every input is read in place: one call for this thread's whole range
            {
                long s0 = b0 * width, s1 = Math.Min(n, b1 * width);
                Segment(s0, (int)(s1 - s0));
                return;
            }
            for (long b = b0; b < b1; b++)
            {
                long start = b * width;
                Segment(start, (int)Math.Min(width, n - start));
            }

            void Segment(long start, int len)
            {
                Bind(readers, start, len, arrays, offsets, ref scratch, stride, gatherDense: false);
                if (len >= lanes && inPlace && len % lanes != 0)
                {
                    int whole = len - len % lanes;
                    loop(arrays, offsets, output, at + (int)start, whole);
                    Segment(start + whole, len - whole);
                    return;
                }
                if (len >= lanes) { loop(arrays, offsets, output, at + (int)start, len); return; }
                // Shorter than one vector: copy dense inputs into padded scratch, run one vector, copy the result out.
                scratch ??= new T[(inputs.Length + 1) * stride];
                for (int k = 0; k < readers.Length; k++)
                    if (readers[k].Dense)
                    {
                        arrays[k].AsSpan(offsets[k], len).CopyTo(scratch.AsSpan(k * stride, len));
                        arrays[k] = scratch; offsets[k] = k * stride;
                    }
                int outAt = inputs.Length * stride;
                loop(arrays, offsets, scratch, outAt, lanes);
                scratch.AsSpan(outAt, len).CopyTo(output.AsSpan(at + (int)start, len));
            }
        });
        return o;
    }

    private static Realised Run<T>(Realised[] inputs, FusedProgram program, int[] shape, DType dtype, Realised? into, Func<OpDef, SpanMap<T>> unary)
        where T : unmanaged, IFloatingPointIeee754<T>, IPowerFunctions<T>
    {
        var steps = program.Steps;
        var maps = steps.Select(s => Unary.ContainsKey(s.Op) ? unary(s.Op) : null).ToArray();
        long n = Shapes.Numel(shape);
        var o = into ?? Realised.Contiguous(BufferPool.Rent(dtype, n), shape);
        // An input that is also the output is read through a copy of each block: some span maps (SiLU, GELU)
        // use their destination as scratch, so reading and writing the same span would not be safe here.
        var readers = inputs.Select(x => new InputReader(x, shape, copy: into is not null && ReferenceEquals(x.Buffer, into.Buffer))).ToArray();
        int width = (int)Math.Min(Block, Math.Max(n, 1));
        long blocks = (n + width - 1) / width;
        Par.For(blocks, Par.ThreadsFor(n * steps.Length, 1 << 14), (b0, b1) =>
        {
            // One block-sized temporary per step and input (small graphs use small blocks).
            var scratch = new T[(steps.Length + inputs.Length) * width];
            var output = o.Span<T>();
            for (long b = b0; b < b1; b++)
            {
                long start = b * width;
                int len = (int)Math.Min(width, n - start);
                RunBlock(steps, maps, readers, scratch, width, start, len, output.Slice((int)start, len));
            }
        });
        return o;
    }

    /// <summary>
    /// fused_reduce: the program evaluated block by block (interpreter) and each block summed while in cache;
    /// block sums are kept per block and added in order, so the result does not depend on the thread count.
    /// </summary>
    public static Realised Reduce(Realised[] inputs, Node node) => node.DType switch
    {
        DType.Float32 => Reduce<float>(inputs, node, static op => Unary[op].F),
        DType.Float64 => Reduce<double>(inputs, node, static op => Unary[op].D),
        var t => throw new NotSupportedException($"fused_reduce: dtype {t.ShortName()}"),
    };

    private static Realised Reduce<T>(Realised[] inputs, Node node, Func<OpDef, SpanMap<T>> unary)
        where T : unmanaged, IFloatingPointIeee754<T>, IPowerFunctions<T>
    {
        var a = (FusedReduceAttrs)node.Attrs!;
        var steps = a.Program.Steps;
        var maps = steps.Select(s => Unary.ContainsKey(s.Op) ? unary(s.Op) : null).ToArray();
        int[] shape = a.Shape;
        long n = Shapes.Numel(shape);
        var readers = inputs.Select(x => new InputReader(x, shape)).ToArray();
        long outputs = Shapes.Numel(node.Shape);
        if (a.Axes.Length != shape.Length && GroupedSum.Applies(shape.Length, a.Axes)) return ReduceGroups(inputs, node, a, steps, maps, readers);
        // A full reduction walks 1024-element blocks; a row reduction walks one row per block.
        bool rows = outputs > 1;
        int width = rows ? shape[^1] : (int)Math.Min(Block, Math.Max(n, 1));
        long blocks = n == 0 ? 0 : (n + width - 1) / width;
        var partial = new double[blocks];
        Par.For(blocks, Par.ThreadsFor(n * steps.Length, 1 << 14), (b0, b1) =>
        {
            var scratch = new T[(steps.Length + inputs.Length) * width];
            for (long b = b0; b < b1; b++)
            {
                long start = b * width;
                int len = (int)Math.Min(width, n - start);
                var last = scratch.AsSpan((steps.Length - 1) * width, len);
                RunBlock(steps, maps, readers, scratch, width, start, len, last);
                double sum = 0;
                foreach (var v in last) sum += double.CreateTruncating(v);
                partial[b] = sum;
            }
        });
        var o = Realised.Contiguous(BufferPool.Rent(node.DType, Math.Max(outputs, 1)), node.Shape);
        if (rows)
        {
            var dst = o.Span<T>();
            for (long r = 0; r < blocks; r++) dst[(int)r] = T.CreateTruncating(a.Mean ? partial[r] / width : partial[r]);
            return o;
        }
        double total = 0;
        foreach (double p in partial) total += p;
        if (a.Mean) total /= n;
        o.Span<T>()[0] = T.CreateTruncating(total);
        return o;
    }

    /// <summary>fused_reduce over some axes (not all, not the last alone): the program runs one row at a time
    /// into scratch and the rows are summed by GroupedSum, the same code as the plain reduction.</summary>
    private static Realised ReduceGroups<T>(Realised[] inputs, Node node, FusedReduceAttrs a, FusedInstruction[] steps,
        SpanMap<T>?[] maps, InputReader[] readers)
        where T : unmanaged, IFloatingPointIeee754<T>, IPowerFunctions<T>
    {
        int width = a.Shape[^1], slots = steps.Length + inputs.Length;
        if (UseCodegen && CompiledRows<T>(inputs, a, readers) is { } rows)
            return GroupedSum.Run<T>(a.Shape, a.Axes, a.Mean, node.Shape, node.DType, rows.Scratch, steps.Length, rows.Values);
        return GroupedSum.Run<T>(a.Shape, a.Axes, a.Mean, node.Shape, node.DType, slots * width, steps.Length, (row, scratch) =>
        {
            var values = scratch.AsSpan((steps.Length - 1) * width, width);
            RunBlock(steps, maps, readers, scratch, width, row * width, width, values);
            return values;
        });
    }

    /// <summary>
    /// Rows of the program through its compiled loop (the same code a materialised group runs, so the values,
    /// and the sums GroupedSum takes of them, match the unfused graph's); null when it cannot be compiled.
    /// Scratch per call: one row-sized slot per input (gathered when not dense) and one for the row.
    /// </summary>
    private static (int Scratch, RowValues<T> Values)? CompiledRows<T>(Realised[] inputs, FusedReduceAttrs a, InputReader[] readers) where T : unmanaged
    {
        if (CompiledLoop<T>(a.Program, readers) is not { } loop) return null;
        int width = a.Shape[^1], lanes = FusedCodegen.Lanes<T>(), stride = Math.Max(width, lanes);
        bool shortRow = width < lanes;   // one padded vector: every input through scratch
        return ((inputs.Length + 1) * stride, (row, scratch) =>
        {
            var arrays = new T[inputs.Length][];
            var offsets = new int[inputs.Length];
            T[]? slots = scratch;
            Bind(readers, row * width, width, arrays, offsets, ref slots, stride, gatherDense: shortRow);
            int outAt = inputs.Length * stride;
            loop(arrays, offsets, scratch, outAt, shortRow ? lanes : width);
            return scratch.AsSpan(outAt, width);
        });
    }

    /// <summary>The program's compiled loop for these inputs (which are single values decides the variant), or null.</summary>
    private static FusedLoop<T>? CompiledLoop<T>(FusedProgram program, InputReader[] readers) where T : unmanaged
    {
        if (readers.Length > FusedCodegen.MaxInputs) return null;
        ulong scalars = 0;
        for (int k = 0; k < readers.Length; k++) if (readers[k].Scalar) scalars |= 1UL << k;
        return FusedCodegen.Get<T>(program, readers.Length, scalars);
    }

    /// <summary>
    /// Points each loop input at its elements [start, start + len): single values and dense inputs in place (dense
    /// ones too are copied into their scratch slot when <paramref name="gatherDense"/>, for a padded short run),
    /// other inputs gathered into their slot of <paramref name="scratch"/> (made on first need).
    /// </summary>
    private static void Bind<T>(InputReader[] readers, long start, int len, T[][] arrays, int[] offsets, ref T[]? scratch, int stride, bool gatherDense)
        where T : unmanaged
    {
        for (int k = 0; k < readers.Length; k++)
        {
            var r = readers[k];
            if (r.Scalar || (r.Dense && !gatherDense)) { arrays[k] = r.Array<T>(); offsets[k] = (int)(r.Offset + (r.Scalar ? 0 : start)); continue; }
            scratch ??= new T[(readers.Length + 1) * stride];
            var slot = scratch.AsSpan(k * stride, stride);
            var got = r.Read(start, len, slot);
            if (r.Dense) got.CopyTo(slot);   // a dense read is the data itself
            arrays[k] = scratch; offsets[k] = k * stride;
        }
    }

    /// <summary>
    /// Interprets the program over one block of <paramref name="len"/> elements starting at <paramref name="start"/>:
    /// each step is one span operation into its scratch slot, the last one into <paramref name="result"/>.
    /// </summary>
    private static void RunBlock<T>(FusedInstruction[] steps, SpanMap<T>?[] maps, InputReader[] readers, T[] scratch,
        int width, long start, int len, Span<T> result)
        where T : unmanaged, IFloatingPointIeee754<T>, IPowerFunctions<T>
    {
        for (int i = 0; i < steps.Length; i++)
        {
            var s = steps[i];
            Span<T> dst = i == steps.Length - 1 ? result : scratch.AsSpan(i * width, len);
            ReadOnlySpan<T> a = Operand(s.A, start, len, width, scratch, steps.Length, readers);
            if (maps[i] is { } map) { map(a, dst); continue; }
            ReadOnlySpan<T> c = Operand(s.B, start, len, width, scratch, steps.Length, readers);
            if (ReferenceEquals(s.Op, OpTable.Add)) TensorPrimitives.Add(a, c, dst);
            else if (ReferenceEquals(s.Op, OpTable.Sub)) TensorPrimitives.Subtract(a, c, dst);
            else if (ReferenceEquals(s.Op, OpTable.Mul)) TensorPrimitives.Multiply(a, c, dst);
            else if (ReferenceEquals(s.Op, OpTable.Div)) TensorPrimitives.Divide(a, c, dst);
            else if (ReferenceEquals(s.Op, OpTable.Maximum)) TensorPrimitives.Max(a, c, dst);
            else if (ReferenceEquals(s.Op, OpTable.Minimum)) TensorPrimitives.Min(a, c, dst);
            else TensorPrimitives.Pow(a, c, dst);
        }
    }

    private static ReadOnlySpan<T> Operand<T>(int code, long start, int len, int width, T[] scratch, int steps, InputReader[] readers) where T : unmanaged
    {
        if (code >= 0) return scratch.AsSpan(code * width, len);
        int k = ~code;
        return readers[k].Read(start, len, scratch.AsSpan((steps + k) * width, width));
    }

    /// <summary>Reads a block of an input broadcast to the output shape: a slice when dense, else gathered.</summary>
    private sealed class InputReader
    {
        private readonly Realised _x;
        private readonly bool _dense, _scalar, _copyDense;

        public bool Dense => _dense;
        public bool Scalar => _scalar && !_dense;
        public long Offset => _x.Buffer.Start + _x.Offset;   // in Array's elements
        public T[] Array<T>() => _x.Buffer.RawArray<T>();
        private readonly int[] _shape;
        private readonly long[] _strides;

        /// <param name="copy">read dense blocks through the caller's buffer instead of in place (the input is also the output)</param>
        public InputReader(Realised x, int[] outShape, bool copy = false)
        {
            _x = x;
            _shape = outShape;
            _strides = Strided.BroadcastStrides(x, outShape);
            _copyDense = copy && x.IsContiguous && Shapes.Equal(x.Shape, outShape);
            _dense = !copy && x.IsContiguous && Shapes.Equal(x.Shape, outShape);
            _scalar = x.Numel == 1 || _strides.All(st => st == 0);   // one value, possibly expanded by stride 0
        }

        public ReadOnlySpan<T> Read<T>(long start, int len, Span<T> buffer) where T : unmanaged
        {
            var data = _x.Buffer.Span<T>();
            if (_dense) return data.Slice((int)(_x.Offset + start), len);
            if (_copyDense) { data.Slice((int)(_x.Offset + start), len).CopyTo(buffer); return buffer[..len]; }
            if (_scalar) { buffer[..len].Fill(data[(int)_x.Offset]); return buffer[..len]; }
            // Odometer from the block's first element: one division per axis per block, then increments.
            int rank = _shape.Length;
            Span<int> idx = stackalloc int[rank];
            long rest = start, off = _x.Offset;
            for (int d = rank - 1; d >= 0; d--) { idx[d] = (int)(rest % _shape[d]); rest /= _shape[d]; off += idx[d] * _strides[d]; }
            for (int e = 0; e < len; e++)
            {
                buffer[e] = data[(int)off];
                for (int d = rank - 1; d >= 0; d--)
                {
                    off += _strides[d];
                    if (++idx[d] < _shape[d]) break;
                    off -= _strides[d] * _shape[d];
                    idx[d] = 0;
                }
            }
            return buffer[..len];
        }
    }
}
