// softmax / log_softmax forward (fp32, bf16) and backward (fp32) vs CPU loops.
using Kiln;
using Kiln.Cuda;

namespace Kiln.Cuda.Tests;

[Collection("gpu")]
public class KernelSoftmaxTests
{
    public static readonly TheoryData<int, int> Shapes = new() { { 3, 1 }, { 5, 7 }, { 257, 33 }, { 17, 1000 }, { 4, 4099 }, { 9, 4096 }, { 2, 12 }, { 3, 8192 }, { 2, 2048 }, { 4, 1028 }, { 2, 12000 } };   // register path K = 1, 2, 4, 8 and the online path

    private static double[] Ref(float[] x, int rows, int cols, bool log)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double m = double.NegativeInfinity, s = 0;
            for (int c = 0; c < cols; c++) m = Math.Max(m, x[r * cols + c]);
            for (int c = 0; c < cols; c++) s += Math.Exp(x[r * cols + c] - m);
            for (int c = 0; c < cols; c++)
                y[r * cols + c] = log ? x[r * cols + c] - m - Math.Log(s) : Math.Exp(x[r * cols + c] - m) / s;
        }
        return y;
    }

    [Theory, MemberData(nameof(Shapes))]
    public void Softmax_and_log_softmax_fp32(int rows, int cols)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        var x = Gpu.Random(rows * cols, rows * 31 + cols, 4f);
        using var dx = K.Up(ctx, x);
        using var dy = K.Zeros<float>(ctx, x.Length);
        foreach (bool log in new[] { false, true })
        {
            if (log) k.LogSoftmax(dx, dy, rows, cols, DType.Float32, stream); else k.Softmax(dx, dy, rows, cols, DType.Float32, stream);
            stream.Synchronize();
            K.Close(log ? "log_softmax" : "softmax", Ref(x, rows, cols, log), K.Down<float>(dy, x.Length), 1e-5);
        }
    }

    [Theory, MemberData(nameof(Shapes))]
    public void Softmax_and_log_softmax_bf16(int rows, int cols)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        var xb = K.ToBf16(Gpu.Random(rows * cols, rows * 37 + cols, 4f));
        var x = K.FromBf16(xb);
        using var dx = K.Up(ctx, xb);
        using var dy = K.Zeros<ushort>(ctx, x.Length);
        foreach (bool log in new[] { false, true })
        {
            if (log) k.LogSoftmax(dx, dy, rows, cols, DType.BFloat16, stream); else k.Softmax(dx, dy, rows, cols, DType.BFloat16, stream);
            stream.Synchronize();
            K.Close(log ? "log_softmax bf16" : "softmax bf16", Ref(x, rows, cols, log), K.FromBf16(K.Down<ushort>(dy, x.Length)), 2e-2);
        }
    }

    [Theory, MemberData(nameof(Shapes))]
    public void Softmax_and_log_softmax_backward_fp32(int rows, int cols)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        var x = Gpu.Random(rows * cols, rows * 41 + cols, 3f);
        var g = Gpu.Random(rows * cols, rows * 43 + cols);
        double tol = cols > 1000 ? 1e-4 : 1e-5;
        foreach (bool log in new[] { false, true })
        {
            var y = Array.ConvertAll(Ref(x, rows, cols, log), v => (float)v);
            var expected = new double[x.Length];
            for (int r = 0; r < rows; r++)
            {
                double s = 0;
                for (int c = 0; c < cols; c++) s += log ? g[r * cols + c] : (double)g[r * cols + c] * y[r * cols + c];
                for (int c = 0; c < cols; c++)
                {
                    int i = r * cols + c;
                    expected[i] = log ? g[i] - Math.Exp(y[i]) * s : y[i] * (g[i] - s);
                }
            }
            using var dy = K.Up(ctx, y);
            using var dg = K.Up(ctx, g);
            using var ddx = K.Zeros<float>(ctx, x.Length);
            if (log) k.LogSoftmaxBackward(dy, dg, ddx, rows, cols, stream); else k.SoftmaxBackward(dy, dg, ddx, rows, cols, stream);
            stream.Synchronize();
            K.Close(log ? "log_softmax backward" : "softmax backward", expected, K.Down<float>(ddx, x.Length), tol);
        }
    }

    [Fact]
    public void All_modules_compile()
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        k.LoadAll();
        Assert.Equal(ctx, k.Context);
    }
}
