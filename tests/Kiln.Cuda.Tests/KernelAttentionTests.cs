// Fused attention forward and backward (fp32; causal bottom-right aligned; GQA) vs a CPU loop in double.
using Kiln.Cuda;

namespace Kiln.Cuda.Tests;

[Collection("gpu")]
public class KernelAttentionTests
{
    public static readonly TheoryData<int, int, int, int, int, int, bool> Cases = new()
    {
        // batch, hq, hkv, T, S, D, causal
        { 1, 1, 1, 1, 1, 16, false },
        { 2, 2, 2, 7, 7, 33, true },
        { 2, 4, 2, 33, 70, 64, true },     // GQA group 2, causal with T < S
        { 1, 8, 2, 100, 100, 128, true },  // group 4
        { 2, 4, 1, 50, 130, 128, false },  // group 4, T < S
        { 1, 2, 1, 17, 45, 8, true },
    };

    private static (double[] o, double[] dq, double[] dk, double[] dv) Ref(float[] q, float[] k, float[] v, float[] dO,
        int b, int hq, int hkv, int T, int S, int D, float scale, bool causal)
    {
        var o = new double[q.Length]; var dq = new double[q.Length]; var dk = new double[k.Length]; var dv = new double[v.Length];
        int group = hq / hkv;
        var p = new double[S]; var dp = new double[S];
        for (int bi = 0; bi < b; bi++)
            for (int h = 0; h < hq; h++)
            {
                long qo = ((long)bi * hq + h) * T * D, ko = ((long)bi * hkv + h / group) * S * D;
                for (int i = 0; i < T; i++)
                {
                    double m = double.NegativeInfinity;
                    for (int j = 0; j < S; j++)
                    {
                        if (causal && j > i + S - T) { p[j] = double.NegativeInfinity; continue; }
                        double s = 0;
                        for (int c = 0; c < D; c++) s += (double)q[qo + i * D + c] * k[ko + j * D + c];
                        p[j] = s * scale;
                        m = Math.Max(m, p[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < S; j++) { p[j] = double.IsNegativeInfinity(p[j]) ? 0 : Math.Exp(p[j] - m); sum += p[j]; }
                    if (sum == 0) continue;
                    for (int j = 0; j < S; j++) p[j] /= sum;
                    for (int c = 0; c < D; c++)
                    {
                        double a = 0;
                        for (int j = 0; j < S; j++) a += p[j] * v[ko + j * D + c];
                        o[qo + i * D + c] = a;
                    }
                    double delta = 0;
                    for (int c = 0; c < D; c++) delta += dO[qo + i * D + c] * o[qo + i * D + c];
                    for (int j = 0; j < S; j++)
                    {
                        double a = 0;
                        for (int c = 0; c < D; c++) a += (double)dO[qo + i * D + c] * v[ko + j * D + c];
                        dp[j] = p[j] * (a - delta);   // ds
                    }
                    for (int j = 0; j < S; j++)
                        for (int c = 0; c < D; c++)
                        {
                            dq[qo + i * D + c] += scale * dp[j] * k[ko + j * D + c];
                            dk[ko + j * D + c] += scale * dp[j] * q[qo + i * D + c];
                            dv[ko + j * D + c] += p[j] * dO[qo + i * D + c];
                        }
                }
            }
        return (o, dq, dk, dv);
    }

    [Theory, MemberData(nameof(Cases))]
    public void Attention_forward_and_backward(int b, int hq, int hkv, int T, int S, int D, bool causal)
    {
        var (ctx, kern, stream) = K.Setup();
        using var _ = stream;
        float scale = 1f / MathF.Sqrt(D);
        var q = Gpu.Random(b * hq * T * D, T + D, 2f);
        var k = Gpu.Random(b * hkv * S * D, S + D + 1, 2f);
        var v = Gpu.Random(b * hkv * S * D, S + D + 2);
        var dO = Gpu.Random(b * hq * T * D, S + D + 3);
        var (eo, edq, edk, edv) = Ref(q, k, v, dO, b, hq, hkv, T, S, D, scale, causal);
        using var dq_ = K.Up(ctx, q); using var dk_ = K.Up(ctx, k); using var dv_ = K.Up(ctx, v); using var ddo = K.Up(ctx, dO);
        using var o = K.Zeros<float>(ctx, q.Length);
        using var lse = K.Zeros<float>(ctx, b * hq * T);
        using var gq = K.Zeros<float>(ctx, q.Length); using var gk = K.Zeros<float>(ctx, k.Length); using var gv = K.Zeros<float>(ctx, v.Length);
        kern.AttentionForward(dq_, dk_, dv_, o, lse, b, hq, hkv, T, S, D, scale, causal, stream);
        kern.AttentionBackward(dq_, dk_, dv_, o, lse, ddo, gq, gk, gv, b, hq, hkv, T, S, D, scale, causal, stream);
        stream.Synchronize();
        K.Close("attention o", eo, K.Down<float>(o, q.Length), 1e-5);
        K.Close("attention dq", edq, K.Down<float>(gq, q.Length), 1e-4);
        K.Close("attention dk", edk, K.Down<float>(gk, k.Length), 1e-4);
        K.Close("attention dv", edv, K.Down<float>(gv, v.Length), 1e-4);
    }
}
