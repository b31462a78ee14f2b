// Runtime compilation of fused elementwise programs (issue 4): a FusedProgram becomes one loop, built as an
// expression tree and compiled to IL that the JIT turns into machine code. Each iteration loads one
// Vector512 (AVX-512) or Vector256 of every dense input, runs every step on registers (Vec512's or Vec256's
// per-op helpers, inlined) and stores
// one vector of the result; the last iteration overlaps the one before it (elements are independent and the
// output aliases an input only in FusedKernel's in-place runs, which never hand a loop a partial last vector), so there is no scalar tail and every element is computed by the same
// vector code wherever it lies. Scalar inputs (one element, broadcast) are loaded once before the loop.
// Compiled loops are cached by (program, dtype, which inputs are scalars): the program's equality is
// structural, so a plan-cache hit, or a new plan with a known group, never compiles. Lazy values make
// each structure compile once however many threads ask at the same time.
using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Linq.Expressions;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Kiln.Graph;

namespace Kiln.Cpu;

/// <summary>
/// A compiled fused loop: computes output[outOffset + e] for e in [0, count) (count ≥ the vector width) from
/// inputs[k][offsets[k] + e], or from inputs[k][offsets[k]] for scalar inputs.
/// </summary>
internal delegate void FusedLoop<T>(T[][] inputs, int[] offsets, T[] output, int outOffset, int count);

internal static class FusedCodegen
{
    /// <summary>Longer programs, or more inputs, are interpreted (JIT time grows with the loop body).</summary>
    public const int MaxSteps = 512, MaxInputs = 64;

    private const int MaxCached = 4096;

    private static long _compilations;

    /// <summary>Loops compiled so far in this process (tests count cache misses with it).</summary>
    public static long Compilations => Interlocked.Read(ref _compilations);

    /// <summary>Vector512 loops where AVX-512 is accelerated (as TensorPrimitives does), else Vector256.</summary>
    private static readonly bool Wide = Vector512.IsHardwareAccelerated;

    /// <summary>Elements per vector step of a compiled loop; a loop's count must be at least this.</summary>
    public static int Lanes<T>() => Wide ? Vector512<T>.Count : Vector256<T>.Count;

    /// <summary>Dynamic code can be compiled and Vector256 is hardware accelerated.</summary>
    public static bool IsAvailable { get; } = RuntimeFeature.IsDynamicCodeSupported && RuntimeFeature.IsDynamicCodeCompiled && Vector256.IsHardwareAccelerated;

    private static readonly Dictionary<OpDef, string> Helper = new()
    {
        [OpTable.Add] = "Add", [OpTable.Sub] = "Sub", [OpTable.Mul] = "Mul", [OpTable.Div] = "Div",
        [OpTable.Maximum] = "Max", [OpTable.Minimum] = "Min", [OpTable.Pow] = "Pow",
        [OpTable.Neg] = "Neg", [OpTable.Abs] = "Abs", [OpTable.Exp] = "Exp", [OpTable.Log] = "Log",
        [OpTable.Sqrt] = "Sqrt", [OpTable.Rsqrt] = "Rsqrt", [OpTable.Sin] = "Sin", [OpTable.Cos] = "Cos",
        [OpTable.Tanh] = "Tanh", [OpTable.Sigmoid] = "Sigmoid", [OpTable.Relu] = "Relu", [OpTable.Square] = "Square",
        [OpTable.Silu] = "Silu", [OpTable.GeluTanh] = "GeluTanh", [OpTable.GeluTanhGrad] = "GeluTanhGrad", [OpTable.GeluErf] = "GeluErf", [OpTable.Erf] = "Erf",
    };

    private readonly record struct Key(FusedProgram Program, Type Element, ulong ScalarMask);

    private static readonly ConcurrentDictionary<Key, Lazy<Delegate>> Cache = new();

    /// <summary>Whether <paramref name="program"/> over <paramref name="inputs"/> inputs can be compiled.</summary>
    public static bool CanCompile(FusedProgram program, int inputs) =>
        IsAvailable && program.Steps.Length <= MaxSteps && inputs <= MaxInputs && program.Steps.All(s => Helper.ContainsKey(s.Op));

    /// <summary>
    /// The compiled loop for the program with the given scalar inputs (bit k: input k is a scalar), compiled on
    /// the first request of its structure; null when the program cannot be compiled (interpret it instead).
    /// </summary>
    public static FusedLoop<T>? Get<T>(FusedProgram program, int inputs, ulong scalarMask) where T : unmanaged
    {
        var key = new Key(program, typeof(T), scalarMask);
        if (!Cache.TryGetValue(key, out var lazy))
        {
            if (!CanCompile(program, inputs)) return null;
            if (Cache.Count >= MaxCached) Cache.Clear();   // like the plan cache: start over when full
            lazy = Cache.GetOrAdd(key, static k => new Lazy<Delegate>(() => Compile<T>(k.Program, k.ScalarMask), LazyThreadSafetyMode.ExecutionAndPublication));
        }
        return (FusedLoop<T>)lazy.Value;
    }

    private static FusedLoop<T> Compile<T>(FusedProgram program, ulong scalarMask) where T : unmanaged
    {
        Interlocked.Increment(ref _compilations);
        var steps = program.Steps;
        var vec = Wide ? typeof(Vector512<T>) : typeof(Vector256<T>);
        var arr = typeof(T[]);
        int width = Lanes<T>();
        int inputCount = 0;
        foreach (var s in steps)
        {
            if (s.A < 0) inputCount = Math.Max(inputCount, ~s.A + 1);
            if (s.Op.Arity > 1 && s.B < 0) inputCount = Math.Max(inputCount, ~s.B + 1);
        }

        var pInputs = Expression.Parameter(typeof(T[][]), "inputs");
        var pOffsets = Expression.Parameter(typeof(int[]), "offsets");
        var pOut = Expression.Parameter(arr, "output");
        var pOutOff = Expression.Parameter(typeof(int), "outOffset");
        var pCount = Expression.Parameter(typeof(int), "count");
        var i = Expression.Variable(typeof(int), "i");
        var last = Expression.Variable(typeof(int), "last");
        var locals = new List<ParameterExpression> { i, last };
        var body = new List<Expression>();
        var exit = Expression.Label("exit");

        var load = Method("Load", arr, typeof(int));
        var store = Method("Store", arr, typeof(int), vec);
        var broadcast = Method("Broadcast", typeof(T));

        // Prologue: each dense input's array and offset in locals; each scalar input broadcast once.
        var inArr = new ParameterExpression?[inputCount];
        var inOff = new ParameterExpression?[inputCount];
        var inVec = new ParameterExpression[inputCount];
        for (int k = 0; k < inputCount; k++)
        {
            var a = Expression.ArrayIndex(pInputs, Expression.Constant(k));
            var o = Expression.ArrayIndex(pOffsets, Expression.Constant(k));
            inVec[k] = Expression.Variable(vec, $"in{k}");
            locals.Add(inVec[k]);
            if ((scalarMask >> k & 1) != 0)
            {
                body.Add(Expression.Assign(inVec[k], Expression.Call(broadcast, Expression.ArrayIndex(a, o))));
                continue;
            }
            inArr[k] = Expression.Variable(arr, $"a{k}");
            inOff[k] = Expression.Variable(typeof(int), $"o{k}");
            locals.Add(inArr[k]!); locals.Add(inOff[k]!);
            body.Add(Expression.Assign(inArr[k]!, a));
            body.Add(Expression.Assign(inOff[k]!, o));
        }
        body.Add(Expression.Assign(i, Expression.Constant(0)));
        body.Add(Expression.Assign(last, Expression.Subtract(pCount, Expression.Constant(width))));

        // Loop body: load dense inputs, run the steps on vector temporaries, store the result.
        var iteration = new List<Expression>();
        for (int k = 0; k < inputCount; k++)
            if (inArr[k] is { } a)
                iteration.Add(Expression.Assign(inVec[k], Expression.Call(load, a, Expression.Add(inOff[k]!, i))));

        // Temporaries are reused once their last reader has run, so the JIT sees few locals however long the program.
        var lastUse = new int[steps.Length];
        for (int j = 0; j < steps.Length; j++)
        {
            if (steps[j].A >= 0) lastUse[steps[j].A] = j;
            if (steps[j].Op.Arity > 1 && steps[j].B >= 0) lastUse[steps[j].B] = j;
        }
        var free = new Stack<ParameterExpression>();
        var temp = new ParameterExpression[steps.Length];
        Expression Operand(int code) => code >= 0 ? temp[code] : inVec[~code];
        for (int j = 0; j < steps.Length; j++)
        {
            var s = steps[j];
            bool binary = s.Op.Arity > 1;
            var call = binary
                ? Expression.Call(Method(Helper[s.Op], vec, vec), Operand(s.A), Operand(s.B))
                : Expression.Call(Method(Helper[s.Op], vec), Operand(s.A));
            if (s.A >= 0 && lastUse[s.A] == j) free.Push(temp[s.A]);
            if (binary && s.B >= 0 && s.B != s.A && lastUse[s.B] == j) free.Push(temp[s.B]);
            if (!free.TryPop(out var v)) { v = Expression.Variable(vec, $"t{j}"); locals.Add(v); }
            temp[j] = v;
            iteration.Add(Expression.Assign(v, call));
        }
        iteration.Add(Expression.Call(store, pOut, Expression.Add(pOutOff, i), temp[^1]));
        // if (i == last) break; i += width; if (i > last) i = last;   (the last vector overlaps its predecessor)
        iteration.Add(Expression.IfThen(Expression.Equal(i, last), Expression.Break(exit)));
        iteration.Add(Expression.AddAssign(i, Expression.Constant(width)));
        iteration.Add(Expression.IfThen(Expression.GreaterThan(i, last), Expression.Assign(i, last)));
        body.Add(Expression.Loop(Expression.Block(iteration), exit));

        var lambda = Expression.Lambda<FusedLoop<T>>(Expression.Block(locals, body), "fused", [pInputs, pOffsets, pOut, pOutOff, pCount]);
        return lambda.Compile(preferInterpretation: false);
    }

    [DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicMethods)]
    private static readonly Type Helpers = Wide ? typeof(Vec512) : typeof(Vec256);

    private static MethodInfo Method(string name, params Type[] args) =>
        Helpers.GetMethod(name, BindingFlags.Public | BindingFlags.Static, args)
        ?? throw new MissingMethodException(Helpers.Name, name);
}
