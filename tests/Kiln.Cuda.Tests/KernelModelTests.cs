// Cross-entropy (forward, mean, backward; ignore_index, label smoothing, int64/int32 targets), RoPE,
// embedding gather / scatter-add and the multi-tensor AdamW vs CPU loops.
using Kiln;
using Kiln.Cuda;

namespace Kiln.Cuda.Tests;

[Collection("gpu")]
public class KernelModelTests
{
    public static readonly TheoryData<int, int, float, bool> CeCases = new()
    {
        { 3, 1, 0f, true }, { 5, 7, 0.1f, false }, { 257, 33, 0f, true }, { 257, 33, 0.2f, true },
        { 17, 1000, 0.1f, false }, { 4, 4099, 0f, true }, { 6, 4096, 0.05f, true },
    };

    [Theory, MemberData(nameof(CeCases))]
    public void Cross_entropy_forward_and_backward(int rows, int classes, float smoothing, bool int64)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        const int ignore = -100;
        var x = Gpu.Random(rows * classes, rows * 7 + classes, 5f);
        var rnd = new Random(rows + classes);
        var t = new long[rows];
        for (int r = 0; r < rows; r++) t[r] = r % 3 == 1 ? ignore : rnd.Next(classes);
        // reference
        var rowLoss = new double[rows]; var grad = new double[x.Length];
        double total = 0; int count = 0;
        for (int r = 0; r < rows; r++) if (t[r] != ignore) count++;
        const float up = 0.7f;
        for (int r = 0; r < rows; r++)
        {
            if (t[r] == ignore) continue;
            double m = double.NegativeInfinity, s = 0, sum = 0;
            for (int c = 0; c < classes; c++) { m = Math.Max(m, x[r * classes + c]); sum += x[r * classes + c]; }
            for (int c = 0; c < classes; c++) s += Math.Exp(x[r * classes + c] - m);
            double lse = m + Math.Log(s);
            rowLoss[r] = (1 - smoothing) * (lse - x[r * classes + t[r]]) + smoothing * (lse - sum / classes);
            total += rowLoss[r];
            for (int c = 0; c < classes; c++)
                grad[r * classes + c] = (Math.Exp(x[r * classes + c] - lse) - smoothing / classes - (c == t[r] ? 1 - smoothing : 0)) * up / count;
        }
        using var dxs = K.Up(ctx, x);
        using var dt = int64 ? K.Up(ctx, t) : K.Up(ctx, Array.ConvertAll(t, v => (int)v));
        var tt = int64 ? DType.Int64 : DType.Int32;
        using var dloss = K.Zeros<float>(ctx, rows);
        using var dmean = K.Zeros<float>(ctx, 1);
        using var dup = K.Up(ctx, new[] { up });
        using var dgrad = K.Up(ctx, Gpu.Random(x.Length, 99));   // garbage: every element must be written
        k.CrossEntropy(dxs, dt, tt, dloss, dmean, rows, classes, ignore, smoothing, stream);
        k.CrossEntropyBackward(dxs, dt, tt, dup, dgrad, rows, classes, ignore, smoothing, stream);
        stream.Synchronize();
        double tol = classes > 1000 ? 1e-4 : 1e-5;
        K.Close("row loss", rowLoss, K.Down<float>(dloss, rows), tol);
        K.Close("mean loss", [total / count], K.Down<float>(dmean, 1), tol);
        K.Close("dlogits", grad, K.Down<float>(dgrad, x.Length), tol);
    }

    [Fact]
    public void Cross_entropy_all_ignored_is_nan()
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        using var dxs = K.Up(ctx, Gpu.Random(4 * 10, 5));
        using var dt = K.Up(ctx, new long[] { -1, -1, -1, -1 });
        using var dloss = K.Zeros<float>(ctx, 4);
        using var dmean = K.Zeros<float>(ctx, 1);
        k.CrossEntropy(dxs, dt, DType.Int64, dloss, dmean, 4, 10, -1, 0f, stream);
        stream.Synchronize();
        Assert.True(float.IsNaN(K.Down<float>(dmean, 1)[0]));
    }

    public static readonly TheoryData<int, int, int, bool, int> RopeCases = new()
    {
        // rows (batch*heads*seq), seq, headDim, interleaved, offset
        { 3, 3, 2, false, 0 }, { 2 * 3 * 7, 7, 8, true, 5 }, { 4 * 33, 33, 64, false, 1000 }, { 2 * 2 * 100, 100, 128, true, 3 }, { 257, 257, 6, false, 17 },
    };

    [Theory, MemberData(nameof(RopeCases))]
    public void Rope_forward_inverse_and_bf16(int rows, int seq, int d, bool interleaved, int offset)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        const double theta = 10000;
        var x = Gpu.Random(rows * d, rows + d);
        double[] Ref(float[] src, bool inverse)
        {
            var y = new double[src.Length];
            int half = d / 2;
            for (int r = 0; r < rows; r++)
            {
                int p = r % seq + offset;
                for (int i = 0; i < half; i++)
                {
                    double ang = p * Math.Pow(theta, -2.0 * i / d);
                    float c = (float)Math.Cos(ang), s = (float)(inverse ? -Math.Sin(ang) : Math.Sin(ang));
                    int i0 = r * d + (interleaved ? 2 * i : i), i1 = r * d + (interleaved ? 2 * i + 1 : i + half);
                    y[i0] = (double)src[i0] * c - (double)src[i1] * s;
                    y[i1] = (double)src[i0] * s + (double)src[i1] * c;
                }
            }
            return y;
        }
        using var dx = K.Up(ctx, x);
        using var dy = K.Zeros<float>(ctx, x.Length);
        k.Rope(dx, dy, rows, seq, d, theta, offset, interleaved, inverse: false, DType.Float32, stream);
        stream.Synchronize();
        var y = K.Down<float>(dy, x.Length);
        K.Close("rope", Ref(x, false), y, 1e-5);
        k.Rope(dy, dy, rows, seq, d, theta, offset, interleaved, inverse: true, DType.Float32, stream);   // in place
        stream.Synchronize();
        K.Close("rope inverse", Ref(y, true), K.Down<float>(dy, x.Length), 1e-5);
        K.Close("rope round trip", K.D(x), K.Down<float>(dy, x.Length), 1e-5);

        var xb = K.ToBf16(x);
        using var dxb = K.Up(ctx, xb);
        using var dyb = K.Zeros<ushort>(ctx, x.Length);
        k.Rope(dxb, dyb, rows, seq, d, theta, offset, interleaved, inverse: false, DType.BFloat16, stream);
        stream.Synchronize();
        K.Close("rope bf16", Ref(K.FromBf16(xb), false), K.FromBf16(K.Down<ushort>(dyb, x.Length)), 2e-2);
    }

    [Theory]
    [InlineData(257, 33, 1000, true)]
    [InlineData(100, 64, 7, false)]
    [InlineData(3, 1, 5, true)]
    public void Embedding_gather_and_scatter_add(int n, int dim, int vocab, bool int64)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        var table = Gpu.Random(vocab * dim, n + dim);
        var rnd = new Random(n);
        var ids = new long[n];
        for (int i = 0; i < n; i++) ids[i] = rnd.Next(vocab);   // small vocab: many repeated ids
        var dout = Gpu.Random(n * dim, n + 5);
        var eg = new double[n * dim]; var es = new double[vocab * dim];
        for (int i = 0; i < n; i++)
            for (int c = 0; c < dim; c++) { eg[i * dim + c] = table[ids[i] * dim + c]; es[ids[i] * dim + c] += dout[i * dim + c]; }
        var it = int64 ? DType.Int64 : DType.Int32;
        using var did = int64 ? K.Up(ctx, ids) : K.Up(ctx, Array.ConvertAll(ids, v => (int)v));
        using var dtab = K.Up(ctx, table);
        using var dg = K.Zeros<float>(ctx, n * dim);
        k.EmbeddingGather(dtab, did, it, dg, n, dim, vocab, DType.Float32, stream);
        using var dd = K.Up(ctx, dout);
        using var ds = K.Zeros<float>(ctx, vocab * dim);
        k.EmbeddingScatterAdd(dd, did, it, ds, n, dim, vocab, stream);
        var tb = K.ToBf16(table);
        using var dtb = K.Up(ctx, tb);
        using var dgb = K.Zeros<ushort>(ctx, n * dim);
        k.EmbeddingGather(dtb, did, it, dgb, n, dim, vocab, DType.BFloat16, stream);
        stream.Synchronize();
        Assert.Equal(Array.ConvertAll(eg, v => (float)v), K.Down<float>(dg, n * dim));
        K.Close("scatter-add", es, K.Down<float>(ds, vocab * dim), 1e-5);
        var gb = K.Down<ushort>(dgb, n * dim);
        for (int i = 0; i < n; i++) for (int c = 0; c < dim; c++) Assert.Equal(tb[ids[i] * dim + c], gb[i * dim + c]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AdamW_multi_tensor_one_launch(bool deviceScalars)
    {
        var (ctx, k, stream) = K.Setup();
        using var _ = stream;
        int[] sizes = [1, 7, 8192, 8193, 100_003];
        float stepSize = 1e-3f * 1.3f, denomScale = 0.9f, decay = 1 - 1e-3f * 0.01f, gradScale = 0.5f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
        var bufs = new List<DeviceBuffer>();
        var host = new List<(float[] p, float[] g, float[] m, float[] v)>();
        var tensors = new List<AdamWTensor>();
        for (int t = 0; t < sizes.Length; t++)
        {
            int n = sizes[t];
            var p = Gpu.Random(n, 10 * t + 1); var g = Gpu.Random(n, 10 * t + 2, 3f);
            var m = Gpu.Random(n, 10 * t + 3, 0.1f); var v = Array.ConvertAll(Gpu.Random(n, 10 * t + 4, 0.01f), Math.Abs);
            host.Add((p, g, m, v));
            var dp = K.Up(ctx, p); var dg = K.Up(ctx, g); var dm = K.Up(ctx, m); var dv = K.Up(ctx, v);
            bufs.AddRange([dp, dg, dm, dv]);
            tensors.Add(new AdamWTensor(dp, dg, dm, dv, n));
        }
        using var batch = k.CreateAdamWBatch(tensors);
        Assert.Equal(1 + 1 + 1 + 2 + 13, batch.Blocks);
        using var scal = K.Up(ctx, new[] { stepSize, denomScale, decay, gradScale });
        if (deviceScalars) k.AdamW(batch, 0f, 0f, 0f, 0f, b1, b2, eps, stream, scal);   // the device values win
        else k.AdamW(batch, stepSize, denomScale, decay, gradScale, b1, b2, eps, stream);
        stream.Synchronize();
        for (int t = 0; t < sizes.Length; t++)
        {
            var (p, g, m, v) = host[t];
            int n = sizes[t];
            var ep = new double[n]; var em = new double[n]; var ev = new double[n];
            for (int i = 0; i < n; i++)
            {
                float gi = g[i] * gradScale;
                float mi = b1 * m[i] + (1 - b1) * gi;
                float vi = b2 * v[i] + (1 - b2) * gi * gi;
                em[i] = mi; ev[i] = vi;
                ep[i] = p[i] * decay - stepSize * mi / (MathF.Sqrt(vi) * denomScale + eps);
            }
            K.Close($"adamw p[{t}]", ep, K.Down<float>(bufs[4 * t], n), 1e-5);
            K.Close($"adamw m[{t}]", em, K.Down<float>(bufs[4 * t + 2], n), 1e-5);
            K.Close($"adamw v[{t}]", ev, K.Down<float>(bufs[4 * t + 3], n), 1e-5);
        }
        foreach (var b in bufs) b.Dispose();
    }
}
