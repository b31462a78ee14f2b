// RMSNorm and LayerNorm forward (fp32, bf16) and backward (fp32: dx, dw, db) vs CPU loops.
using Kiln;
using Kiln.Cuda;

namespace Kiln.Cuda.Tests;

[Collection("gpu")]
public class KernelNormTests
{
    public static readonly TheoryData<int, int> Shapes = new() { { 3, 1 }, { 5, 7 }, { 257, 33 }, { 17, 1000 }, { 4, 4099 }, { 130, 4096 }, { 2, 12 }, { 3, 2048 }, { 4, 1028 }, { 2, 8192 }, { 2, 12000 } };   // register path K = 1, 2, 4, 8 and the two-read form
    private const float Eps = 1e-5f;

    private static double[] RmsRef(float[] x, float[] w, int rows, int cols)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double ss = 0;
            for (int c = 0; c < cols; c++) ss += (double)x[r * cols + c] * x[r * cols + c];
            double inv = 1 / Math.Sqrt(ss / cols + Eps);
            for (int c = 0; c < cols; c++) y[r * cols + c] = x[r * cols + c] * inv * w[c];
        }
        return y;
    }

    private static double[] LnRef(float[] x, float[] w, float[] b, int rows, int cols)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double mean = 0, v = 0;
            for (int c = 0; c < cols; c++) mean += x[r * cols + c];
            mean /= cols;
            for (int c = 0; c < cols; c++) v += (x[r * cols + c] - mean) * (x[r * cols + c] - mean);
            double inv = 1 / Math.Sqrt(v / cols + Eps);
            for (int c = 0; c < cols; c++) y[r * cols + c] = (x[r * cols + c] - mean) * inv * w[c] + b[c];
        }
        return y;
    }

    [Theory, MemberData(nameof(Shapes))]
    public void RmsNorm_and_LayerNorm_forward_fp32(int rows, int cols)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        var x = Gpu.Random(rows * cols, rows + cols, 2f);
        var w = Gpu.Random(cols, cols + 1);
        var b = Gpu.Random(cols, cols + 2);
        using var dx = K.Up(ctx, x); using var dw = K.Up(ctx, w); using var db = K.Up(ctx, b);
        using var dy = K.Zeros<float>(ctx, x.Length);
        k.RmsNorm(dx, dw, dy, rows, cols, Eps, DType.Float32, stream);
        stream.Synchronize();
        K.Close("rmsnorm", RmsRef(x, w, rows, cols), K.Down<float>(dy, x.Length), 1e-5);
        k.LayerNorm(dx, dw, db, dy, rows, cols, Eps, DType.Float32, stream);
        stream.Synchronize();
        // cols = 1: x - mean is 0 exactly, y = b
        K.Close("layernorm", LnRef(x, w, b, rows, cols), K.Down<float>(dy, x.Length), 1e-5);
    }

    [Theory, MemberData(nameof(Shapes))]
    public void RmsNorm_and_LayerNorm_forward_bf16(int rows, int cols)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        var xb = K.ToBf16(Gpu.Random(rows * cols, rows + cols + 7, 2f));
        var wb = K.ToBf16(Gpu.Random(cols, cols + 8));
        var bb = K.ToBf16(Gpu.Random(cols, cols + 9));
        var (x, w, b) = (K.FromBf16(xb), K.FromBf16(wb), K.FromBf16(bb));
        using var dx = K.Up(ctx, xb); using var dw = K.Up(ctx, wb); using var db = K.Up(ctx, bb);
        using var dy = K.Zeros<ushort>(ctx, x.Length);
        k.RmsNorm(dx, dw, dy, rows, cols, Eps, DType.BFloat16, stream);
        stream.Synchronize();
        K.Close("rmsnorm bf16", RmsRef(x, w, rows, cols), K.FromBf16(K.Down<ushort>(dy, x.Length)), 2e-2);
        k.LayerNorm(dx, dw, db, dy, rows, cols, Eps, DType.BFloat16, stream);
        stream.Synchronize();
        K.Close("layernorm bf16", LnRef(x, w, b, rows, cols), K.FromBf16(K.Down<ushort>(dy, x.Length)), 2e-2);
    }

    [Theory, MemberData(nameof(Shapes))]
    public void RmsNorm_backward_fp32(int rows, int cols)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        var x = Gpu.Random(rows * cols, rows + cols + 11, 2f);
        var w = Gpu.Random(cols, cols + 12);
        var g = Gpu.Random(rows * cols, rows + cols + 13);
        var edx = new double[x.Length]; var edw = new double[cols];
        for (int r = 0; r < rows; r++)
        {
            double ss = 0, gwx = 0;
            for (int c = 0; c < cols; c++) { int i = r * cols + c; ss += (double)x[i] * x[i]; gwx += (double)g[i] * w[c] * x[i]; }
            double inv = 1 / Math.Sqrt(ss / cols + Eps), m = gwx / cols;
            for (int c = 0; c < cols; c++)
            {
                int i = r * cols + c;
                edx[i] = (double)g[i] * w[c] * inv - x[i] * m * inv * inv * inv;
                edw[c] += (double)g[i] * x[i] * inv;
            }
        }
        using var dx = K.Up(ctx, x); using var dw = K.Up(ctx, w); using var dg = K.Up(ctx, g);
        using var odx = K.Zeros<float>(ctx, x.Length); using var odw = K.Zeros<float>(ctx, cols);
        k.RmsNormBackward(dx, dw, dg, odx, odw, rows, cols, Eps, stream);
        stream.Synchronize();
        K.Close("rmsnorm dx", edx, K.Down<float>(odx, x.Length), cols > 1000 ? 1e-4 : 1e-5);
        K.Close("rmsnorm dw", edw, K.Down<float>(odw, cols), 1e-4);
    }

    [Theory, MemberData(nameof(Shapes))]
    public void LayerNorm_backward_fp32(int rows, int cols)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        var x = Gpu.Random(rows * cols, rows + cols + 21, 2f);
        var w = Gpu.Random(cols, cols + 22);
        var g = Gpu.Random(rows * cols, rows + cols + 23);
        var edx = new double[x.Length]; var edw = new double[cols]; var edb = new double[cols];
        for (int r = 0; r < rows; r++)
        {
            double mean = 0, v = 0;
            for (int c = 0; c < cols; c++) mean += x[r * cols + c];
            mean /= cols;
            for (int c = 0; c < cols; c++) v += (x[r * cols + c] - mean) * (x[r * cols + c] - mean);
            double inv = 1 / Math.Sqrt(v / cols + Eps), mg = 0, mgx = 0;
            for (int c = 0; c < cols; c++) { int i = r * cols + c; double gw = (double)g[i] * w[c]; mg += gw; mgx += gw * (x[i] - mean) * inv; }
            mg /= cols; mgx /= cols;
            for (int c = 0; c < cols; c++)
            {
                int i = r * cols + c;
                double xh = (x[i] - mean) * inv;
                edx[i] = ((double)g[i] * w[c] - mg - xh * mgx) * inv;
                edw[c] += g[i] * xh;
                edb[c] += g[i];
            }
        }
        using var dx = K.Up(ctx, x); using var dw = K.Up(ctx, w); using var dg = K.Up(ctx, g);
        using var odx = K.Zeros<float>(ctx, x.Length); using var odw = K.Zeros<float>(ctx, cols); using var odb = K.Zeros<float>(ctx, cols);
        k.LayerNormBackward(dx, dw, dg, odx, odw, odb, rows, cols, Eps, stream);
        stream.Synchronize();
        K.Close("layernorm dx", edx, K.Down<float>(odx, x.Length), cols > 1000 ? 1e-4 : 1e-5);
        K.Close("layernorm dw", edw, K.Down<float>(odw, cols), 1e-4);
        K.Close("layernorm db", edb, K.Down<float>(odb, cols), 1e-4);
    }
}
