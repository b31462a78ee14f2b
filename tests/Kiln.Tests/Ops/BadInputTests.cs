// Bad calls fail early with the right exception type, and the message names the op and the shapes or the
// argument at fault (that message is all a user sees).
using System.Reflection;

namespace Kiln.Tests.Ops;

public class BadInputTests
{
    private static Tensor F(params int[] shape) => Tensor.Zeros(shape);
    private static Tensor I64(params long[] v) => Tensor.FromArray(v);

    private static void Names(Exception ex, params string[] parts)
    {
        foreach (var p in parts) Assert.True(ex.Message.Contains(p, StringComparison.Ordinal), $"message \"{ex.Message}\" does not mention \"{p}\"");
    }

    [Fact]
    public void ShapeMismatchInBinaryOps()
    {
        var ex = Assert.Throws<ArgumentException>(() => F(2, 3) + F(4));
        Names(ex, "add", "(2, 3)", "(4,)");
        ex = Assert.Throws<ArgumentException>(() => Kiln.Ops.Maximum(F(3, 1, 5), F(4, 2)));
        Names(ex, "maximum", "(3, 1, 5)", "(4, 2)");
        ex = Assert.Throws<ArgumentException>(() => F(2, 3) < F(3, 2));
        Names(ex, "lt", "(2, 3)", "(3, 2)");
        ex = Assert.Throws<ArgumentException>(() => Kiln.Ops.Where(Tensor.Zeros([2], DType.Bool), F(3), F(3)));
        Names(ex, "where", "(2,)", "(3,)");
    }

    [Fact]
    public void MatMulInnerDimensionMismatch()
    {
        var ex = Assert.Throws<ArgumentException>(() => F(2, 3).MatMul(F(4, 5)));
        Names(ex, "matmul", "(2, 3)", "(4, 5)", "3", "4");
        ex = Assert.Throws<ArgumentException>(() => F(2, 2, 3).MatMul(F(3, 3, 4)));
        Names(ex, "matmul", "batch", "(2, 2, 3)", "(3, 3, 4)");
        ex = Assert.Throws<ArgumentException>(() => F(3).MatMul(F(4)));
        Names(ex, "matmul", "3", "4");
        ex = Assert.Throws<ArgumentException>(() => Tensor.Scalar(1).MatMul(F(3)));
        Names(ex, "matmul", "()", "(3,)");
    }

    [Fact]
    public void WrongDTypes()
    {
        var ints = Tensor.FromArray(new[] { 1, 2, 3 });
        var ex = Assert.Throws<ArgumentException>(() => ints.Log());
        Names(ex, "log", "i32", "(3,)");
        ex = Assert.Throws<ArgumentException>(() => F(4, 2).IndexSelect(0, Tensor.FromArray(new[] { 0f, 1f })));
        Names(ex, "index_select", "index", "f32");
        ex = Assert.Throws<ArgumentException>(() => Kiln.Ops.Where(F(3), F(3), F(3)));
        Names(ex, "where", "condition", "bool", "f32");
        ex = Assert.Throws<ArgumentException>(() => Kiln.Ops.Gather(F(2, 3), 1, Tensor.FromArray(new[] { 0.0, 1.0 }, [2, 1])));
        Names(ex, "gather", "index", "f64");
        ex = Assert.Throws<ArgumentException>(() => Kiln.Ops.CrossEntropy(F(2, 3), Tensor.FromArray(new[] { 0f, 1f })));
        Names(ex, "cross_entropy", "targets", "f32");
        ex = Assert.Throws<ArgumentException>(() => Tensor.FromArray(new[] { 1L, 2L }).MatMul(Tensor.FromArray(new[] { 1L, 2L })));
        Names(ex, "matmul", "i64");
        ex = Assert.Throws<ArgumentException>(() => Tensor.FromArray(new[] { true }) + Tensor.FromArray(new[] { false }));
        Names(ex, "add", "bool");
        ex = Assert.Throws<ArgumentException>(() => Tensor.FromArray(new[] { 1, 2 }).Mean());
        Names(ex, "mean", "i32");
        ex = Assert.Throws<ArgumentException>(() => Kiln.Ops.Pow(Tensor.FromArray(new[] { 2, 3 }), Tensor.FromArray(new[] { 2, 2 })));
        Names(ex, "pow", "i32");
    }

    [Fact]
    public void AxisOutOfRange()
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() => F(2, 3).Sum([5]));
        Assert.IsType<ArgumentOutOfRangeException>(ex);
        Names(ex, "sum", "axis 5", "rank 2");
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => F(2, 3).Softmax(-3));
        Names(ex, "softmax", "axis -3", "rank 2");
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => F(2, 3).LogSoftmax(2));
        Names(ex, "log_softmax", "axis 2");
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => F(2, 3).ArgMax(-3));
        Names(ex, "argmax", "axis -3");
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => Kiln.Ops.Concat([F(2), F(2)], 1));
        Names(ex, "concat", "axis 1", "rank 1");
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => F(2, 3).Slice(2, 0, 1));
        Names(ex, "slice", "axis 2");
        ex = Assert.Throws<ArgumentException>(() => F(2, 3).Sum([1, -1]));
        Names(ex, "sum", "twice");
    }

    [Fact]
    public void MixedDevices()
    {
        // No CUDA backend is registered in this test process: data cannot go to the GPU, and says why.
        var none = Assert.Throws<NotSupportedException>(() => Tensor.Zeros([2, 3], device: Device.Cuda()));
        Assert.Contains("cuda:0", none.Message);
        Assert.Contains("backend", none.Message);
        // The device rule is checked when a node is built: a lazy node placed on cuda:0 is enough to test it.
        var cpu = F(2, 3);
        var onCuda = new Tensor(new Kiln.Graph.Node(Kiln.Graph.OpTable.Neg, [cpu.Node], null, [2, 3], DType.Float32, Device.Cuda()));
        var ex = Assert.Throws<ArgumentException>(() => F(2, 3) + onCuda);
        Names(ex, "add", "cpu", "cuda:0");
        var onCuda2 = new Tensor(new Kiln.Graph.Node(Kiln.Graph.OpTable.Neg, [F(3, 2).Node], null, [3, 2], DType.Float32, Device.Cuda()));
        ex = Assert.Throws<ArgumentException>(() => F(2, 3).MatMul(onCuda2));
        Names(ex, "matmul", "cpu", "cuda:0");
        Assert.Throws<NotSupportedException>(() => Device.Parse("tpu"));
        Assert.Equal(Device.Cpu, Device.Parse("auto"));   // no CUDA backend registered here: auto is the CPU
    }

    [Fact]
    public void UseAfterDisposeOfTheOperand()
    {
        var x = F(2, 3);
        x.Dispose();
        Assert.True(x.IsDisposed);
        var ex = Assert.Throws<ObjectDisposedException>(() => x.Exp());
        Names(ex, "exp", "disposed");
        Assert.Throws<ObjectDisposedException>(() => x.ToArray<float>());
        Assert.Throws<ObjectDisposedException>(() => x.Eval());
        // Metadata stays readable by design (so the first op that touches the tensor can name itself).
        Assert.Equal([2, 3], x.Shape);
    }

    [Theory]
    [InlineData("add")]
    [InlineData("matmul")]
    [InlineData("sum")]
    [InlineData("softmax")]
    [InlineData("concat")]
    public void UseAfterDisposeNamesTheOp(string op)
    {
        var live = F(2, 2);
        var dead = F(2, 2);
        dead.Dispose();
        var ex = Assert.Throws<ObjectDisposedException>(() => _ = op switch
        {
            "add" => live + dead,
            "matmul" => live.MatMul(dead),
            "sum" => dead.Sum(),
            "softmax" => dead.Softmax(),
            _ => Kiln.Ops.Concat([live, dead], 0),
        });
        Names(ex, op, "disposed");
    }

    [Fact]
    public void OutOfRangeIndices()
    {
        var ex = Assert.Throws<IndexOutOfRangeException>(() => Kiln.Ops.Embedding(F(5, 3), I64(1, 5, 2)).ToArray<float>());
        Assert.True(ex.Message.Contains("embedding") || ex.Message.Contains("index_select"), ex.Message);
        Names(ex, "index 5", "size 5");
        ex = Assert.Throws<IndexOutOfRangeException>(() => Kiln.Ops.Embedding(F(5, 3), I64(-1)).ToArray<float>());
        Names(ex, "index -1", "size 5");
        ex = Assert.Throws<IndexOutOfRangeException>(() => Kiln.Ops.Gather(F(2, 4), 1, Tensor.FromArray(new long[] { 0, 7 }, [2, 1])).ToArray<float>());
        Names(ex, "gather", "index 7", "size 4");
        ex = Assert.Throws<IndexOutOfRangeException>(() => Kiln.Ops.ScatterAdd(F(2, 4), 0, Tensor.FromArray(new long[] { 3 }, [1, 1]), F(1, 1)).ToArray<float>());
        Names(ex, "scatter_add", "index 3", "size 2");
        ex = Assert.Throws<IndexOutOfRangeException>(() => Kiln.Ops.IndexAdd(F(3, 2), 0, I64(3), F(1, 2)).ToArray<float>());
        Names(ex, "index_add", "index 3", "size 3");
        ex = Assert.Throws<IndexOutOfRangeException>(() => Kiln.Ops.CrossEntropy(F(2, 3), I64(0, 3)).ToArray<float>());
        Names(ex, "cross_entropy", "3", "3 classes");
    }

    [Fact]
    public void OutOfRangeIndexInsideALargerGraphKeepsItsType()
    {
        // The bad gather sits in a dependency level next to independent work, which the evaluator runs in
        // parallel: the caller must still see IndexOutOfRangeException, not a wrapper.
        var x = Nd.Random([2, 4], 1).ToTensor(DType.Float32);
        var bad = Kiln.Ops.Gather(x.Exp(), 1, Tensor.FromArray(new long[] { 0, 9 }, [2, 1]));
        var other = x.Tanh().Sum();
        var ex = Record.Exception(() => Tensor.Eval(bad.Sum() + other));
        Assert.IsType<IndexOutOfRangeException>(ex);
        Names(ex, "gather", "index 9", "size 4");
    }

    [Theory]
    [InlineData("gather")]
    [InlineData("scatter_add")]
    public void IndexLargerThanInputOutsideTheAxisIsRejected(string op)
    {
        // torch.gather / scatter_add require index.size(d) <= input.size(d) for d != axis. Walking index (2, 3)
        // over x (3, 2) along axis 0 reads (writes) column 2 of a 2-column row, i.e. the next row's column 0.
        var x = Tensor.FromArray(new float[] { 0, 1, 2, 3, 4, 5 }, [3, 2]);
        var idx = Tensor.FromArray(new long[] { 0, 0, 0, 0, 0, 0 }, [2, 3]);
        var ex = Record.Exception(() => (op == "gather" ? Kiln.Ops.Gather(x, 0, idx) : Kiln.Ops.ScatterAdd(x, 0, idx, Tensor.Ones([2, 3]))).ToArray<float>());
        Assert.True(ex is not null, $"{op} of index (2, 3) over x (3, 2) along axis 0 returned a value instead of failing");
        Assert.True(ex is ArgumentException or IndexOutOfRangeException, $"unexpected {ex.GetType().Name}: {ex.Message}");
        Names(ex, op, "(3, 2)", "(2, 3)");
    }

    [Theory]
    [InlineData("max")]
    [InlineData("min")]
    [InlineData("argmax")]
    public void ExtremumOverAnEmptyAxis(string op)
    {
        // PyTorch refuses max/min/argmax over a size-0 axis; the error must say which op and which shape.
        var x = F(2, 0);
        var ex = Record.Exception(() => (op switch { "max" => x.Max([1]), "min" => x.Min([1]), _ => x.ArgMax(1) }).ToArray<double>());
        Assert.IsType<ArgumentException>(ex);
        Names(ex, op, "(2, 0)");
    }

    [Fact]
    public void ReshapeToWrongElementCount()
    {
        var ex = Assert.Throws<ArgumentException>(() => F(2, 3).Reshape(4, 2));
        Names(ex, "reshape", "(2, 3)", "(4, 2)", "6");
        ex = Assert.Throws<ArgumentException>(() => F(2, 3).Reshape(-1, 4));
        Names(ex, "reshape", "(2, 3)", "(-1, 4)");
        ex = Assert.Throws<ArgumentException>(() => F(2, 3).Expand(3, 3));
        Names(ex, "expand", "(2, 3)", "(3, 3)");
        ex = Assert.Throws<ArgumentException>(() => Kiln.Ops.Split(F(2, 5), [2, 2], 1));
        Names(ex, "split", "(2, 5)");
        ex = Assert.Throws<ArgumentException>(() => Tensor.FromArray(new float[5], [2, 3]));
        Names(ex, "from_array", "5", "(2, 3)");
    }

    [Fact]
    public void ItemOnMultiElementTensor()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => F(2, 3).Item<float>());
        Names(ex, "Item", "(2, 3)", "6");
        Assert.Equal(0f, F(1, 1).Item<float>());
    }

    [Fact]
    public void OtherArgumentChecks()
    {
        Names(Assert.Throws<ArgumentException>(() => Kiln.Ops.RmsNorm(F(2, 4), F(3))), "rms_norm", "weight", "(4,)");
        Names(Assert.Throws<ArgumentException>(() => Kiln.Ops.LayerNorm(F(2, 4), F(4), F(5))), "layer_norm", "bias", "(4,)");
        Names(Assert.Throws<ArgumentException>(() => F(2, 3).Rope()), "rope", "even", "(2, 3)");
        Names(Assert.Throws<ArgumentException>(() => F(3, 4).Permute(0, 0)), "permute");
        Names(Assert.Throws<ArgumentException>(() => F(3, 4).Pad([1], [1])), "pad", "(3, 4)");
        Names(Assert.Throws<ArgumentException>(() => Kiln.Ops.Concat([F(2, 3), F(3, 3)], 1)), "concat", "(2, 3)", "(3, 3)");
        Names(Assert.Throws<ArgumentException>(() => Kiln.Ops.Stack([F(2, 3), F(3, 2)])), "stack", "(2, 3)", "(3, 2)");
        Names(Assert.Throws<ArgumentException>(() => Kiln.Ops.CrossEntropy(F(2, 3), I64(0, 1, 2))), "cross_entropy", "(2, 3)", "(3,)");
        Names(Assert.Throws<ArgumentOutOfRangeException>(() => Kiln.Ops.CrossEntropy(F(2, 3), I64(0, 1), labelSmoothing: 1.5)), "cross_entropy", "label_smoothing");
        Names(Assert.Throws<ArgumentException>(() => F(3).Triangle(true)), "triangle", "(3,)");
        Names(Assert.Throws<ArgumentException>(() => Kiln.Ops.IndexAdd(F(3, 2), 0, I64(0), F(1, 3))), "index_add", "source", "(1, 2)");
        Names(Assert.Throws<ArgumentOutOfRangeException>(() => F(3).Slice(0, 0, 2, 0)), "slice", "step");
        Names(Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, -1])), "full", "negative");
    }
}
