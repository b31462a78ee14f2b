using Kiln.LoRA.Models;

namespace Kiln.LoRA.Tests.Models;

/// <summary>
/// An independent float64 Llama/Qwen2 forward written as plain loops over arrays, one token at a time
/// (so it also checks the causal mask and the KV cache by construction). Weights are the same named
/// float arrays the model is built from.
/// </summary>
internal static class NaiveLlama
{
    public static double[][] Logits(ModelConfig c, IReadOnlyDictionary<string, float[]> w, int[] ids, int[]? positions = null, bool[]? attend = null, double[]? invFreq = null)
    {
        int d = c.HiddenSize, hd = c.HeadDim, h = c.Heads, kvh = c.KvHeads, n = ids.Length;
        var keys = new double[c.Layers][][]; var values = new double[c.Layers][][];
        for (int l = 0; l < c.Layers; l++) { keys[l] = new double[n][]; values[l] = new double[n][]; }
        var result = new double[n][];
        for (int p = 0; p < n; p++)
        {
            int pos = positions?[p] ?? p;
            var x = Row(w["model.embed_tokens.weight"], ids[p], d);
            for (int l = 0; l < c.Layers; l++)
            {
                string pre = $"model.layers.{l}.";
                var xn = Rms(x, w[pre + "input_layernorm.weight"], c.RmsNormEps);
                var q = Lin(w, pre + "self_attn.q_proj", xn, h * hd, c.QkvBias);
                var k = Lin(w, pre + "self_attn.k_proj", xn, kvh * hd, c.QkvBias);
                var v = Lin(w, pre + "self_attn.v_proj", xn, kvh * hd, c.QkvBias);
                Rope(q, h, hd, pos, c.RopeTheta, invFreq); Rope(k, kvh, hd, pos, c.RopeTheta, invFreq);
                keys[l][p] = k; values[l][p] = v;
                var att = new double[h * hd];
                for (int head = 0; head < h; head++)
                {
                    int kv = head / (h / kvh);
                    var s = new double[p + 1];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j <= p; j++)
                    {
                        if (attend is not null && !attend[j]) { s[j] = double.NegativeInfinity; continue; }
                        double dot = 0;
                        for (int i = 0; i < hd; i++) dot += q[head * hd + i] * keys[l][j][kv * hd + i];
                        s[j] = dot / Math.Sqrt(hd); max = Math.Max(max, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= p; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                    for (int j = 0; j <= p; j++)
                        for (int i = 0; i < hd; i++) att[head * hd + i] += s[j] / sum * values[l][j][kv * hd + i];
                }
                var o = Lin(w, pre + "self_attn.o_proj", att, d, c.OutputBias);
                for (int i = 0; i < d; i++) x[i] += o[i];
                var xn2 = Rms(x, w[pre + "post_attention_layernorm.weight"], c.RmsNormEps);
                var g = Lin(w, pre + "mlp.gate_proj", xn2, c.IntermediateSize, false);
                var u = Lin(w, pre + "mlp.up_proj", xn2, c.IntermediateSize, false);
                for (int i = 0; i < g.Length; i++) g[i] = g[i] / (1 + Math.Exp(-g[i])) * u[i];
                var down = Lin(w, pre + "mlp.down_proj", g, d, false);
                for (int i = 0; i < d; i++) x[i] += down[i];
            }
            var xf = Rms(x, w["model.norm.weight"], c.RmsNormEps);
            result[p] = c.TieWordEmbeddings ? MatVec(w["model.embed_tokens.weight"], xf, c.VocabSize) : MatVec(w["lm_head.weight"], xf, c.VocabSize);
        }
        return result;
    }

    private static double[] Row(float[] m, int r, int cols) => Enumerable.Range(0, cols).Select(i => (double)m[r * cols + i]).ToArray();

    private static double[] Rms(double[] x, float[] g, double eps)
    {
        double ms = x.Sum(v => v * v) / x.Length, inv = 1 / Math.Sqrt(ms + eps);
        return x.Select((v, i) => v * inv * g[i]).ToArray();
    }

    private static double[] MatVec(float[] m, double[] x, int rows)
    {
        var y = new double[rows];
        for (int r = 0; r < rows; r++) { double s = 0; for (int i = 0; i < x.Length; i++) s += m[r * x.Length + i] * x[i]; y[r] = s; }
        return y;
    }

    private static double[] Lin(IReadOnlyDictionary<string, float[]> w, string name, double[] x, int rows, bool bias)
    {
        var y = MatVec(w[name + ".weight"], x, rows);
        if (bias) { var b = w[name + ".bias"]; for (int i = 0; i < rows; i++) y[i] += b[i]; }
        return y;
    }

    /// <summary>Hugging Face half-split rotation: pairs (i, i + hd/2) by pos·θ^(−2i/hd).</summary>
    private static void Rope(double[] v, int heads, int hd, int pos, double theta, double[]? invFreq)
    {
        for (int head = 0; head < heads; head++)
            for (int i = 0; i < hd / 2; i++)
            {
                double a = pos * (invFreq?[i] ?? Math.Pow(theta, -2.0 * i / hd));
                int lo = head * hd + i, hi = lo + hd / 2;
                double x0 = v[lo], x1 = v[hi];
                v[lo] = x0 * Math.Cos(a) - x1 * Math.Sin(a);
                v[hi] = x1 * Math.Cos(a) + x0 * Math.Sin(a);
            }
    }
}
