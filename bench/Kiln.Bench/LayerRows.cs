// The optimizer issue's remaining rows: LoRA rank sweep, one transformer layer's ops at (4,16,1024),
// graph-building time, host µs per Eval of a 100-node graph (plan hit and miss), and the plan-cache hit
// rate of a training-like loop. Rows that return null from their run only build (nothing is evaluated).
using Kiln;
using Kiln.Runtime;

namespace Kiln.Bench;

public static class LayerRows
{
    private const int B = 4, T = 16, D = 1024, Heads = 16, HeadDim = 64, Ffn = 2816;

    public static IEnumerable<Row> All()
    {
        foreach (int r in new[] { 4, 8, 16, 32, 64 })
            yield return new Row($"lora_2x32x1024_r{r}", $"x=2x32x1024,W=1024x1024,r={r}", () =>
            {
                var x = Tensor.RandomNormal([2, 32, D], 1); var w = Tensor.RandomNormal([D, D], 2);
                var a = Tensor.RandomNormal([D, r], 3); var bb = Tensor.RandomNormal([r, D], 4);
                return () => x.MatMul(w) + x.MatMul(a).MatMul(bb) * 2.0;
            }, 2.0 * 64 * D * (D + 2 * r), "GFLOP/s");
        double layerFlops = 2.0 * B * T * (4.0 * D * D + 3.0 * D * Ffn) + 2 * 2.0 * B * Heads * T * T * HeadDim;
        yield return new Row("layer_4x16x1024", "rmsnorm,attn(16x64,causal),swiglu 2816", () =>
        {
            var l = Shared.Value; var x = Tensor.RandomNormal([B, T, D], 9);
            return () => l.Forward(x);
        }, layerFlops, "GFLOP/s");
        yield return new Row("layer_build_4x16x1024", "graph only, no Eval", () =>
        {
            var l = Shared.Value; var x = Tensor.RandomNormal([B, T, D], 9);
            return () => { l.Forward(x); return null; };
        }, 1e3 * Nodes(Shared.Value.Forward(Tensor.Zeros([B, T, D]))), "Mnode/s");
        yield return new Row("chain100_build_1elem", "100 ops, graph only", () =>
        {
            var x = Tensor.RandomNormal([1], 1);
            return () => { Chain(x, 0.999); return null; };
        }, 100e3, "Mnode/s");
        yield return new Row("chain100_eval_hit_1elem", "100 ops, plan hit", () =>
        {
            var x = Tensor.RandomNormal([1], 1);
            return () => Chain(x, 0.999);
        }, 100e3, "Mnode/s");
        long unique = 0;
        yield return new Row("chain100_eval_miss_1elem", "100 ops, plan miss", () =>
        {
            var x = Tensor.RandomNormal([1], 1);
            return () => Chain(x, 0.999 - ++unique * 1e-12);   // a new fill value: a new structural key
        }, 100e3, "Mnode/s");
    }

    /// <summary>100 ops: (y · c).tanh() fifty times (the first constant makes the key).</summary>
    internal static Tensor Chain(Tensor x, double first)
    {
        var y = (x * first).Tanh();
        for (int i = 1; i < 50; i++) y = (y * 0.999).Tanh();
        return y;
    }

    private static readonly Lazy<Layer> Shared = new(() => new Layer());

    private static int Nodes(Tensor y) => Kiln.Graph.GraphWalk.Topological([y.Node], n => n.IsRealised).Count;

    /// <summary>Plan-cache hits over a training-like loop: MLP forward, loss, grads, SGD update, detach; new data each step.</summary>
    public static string PlanHitRate(int steps = 20)
    {
        var w1 = Tensor.RandomNormal([64, 128], 1, std: 0.1); var w2 = Tensor.RandomNormal([128, 10], 2, std: 0.1);
        var lr = Tensor.FromArray(new[] { 0.01f });
        long h0 = PlanCache.Hits, m0 = PlanCache.Misses;
        for (int s = 0; s < steps; s++)
        {
            var x = Tensor.RandomNormal([32, 64], 100 + s);
            var target = Tensor.FromArray(Enumerable.Range(0, 32).Select(i => (long)((i + s) % 10)).ToArray());
            var logits = x.MatMul(w1).Relu().MatMul(w2);
            var loss = -Ops.Gather(logits.LogSoftmax(-1), 1, target.Unsqueeze(1)).Mean();   // recognised as cross_entropy
            var g = Autograd.Grad(loss, w1, w2);
            var n1 = w1 - lr * g[0]; var n2 = w2 - lr * g[1];
            Tensor.Eval(loss, n1, n2);
            w1 = n1.Detach(); w2 = n2.Detach();
        }
        long hits = PlanCache.Hits - h0, misses = PlanCache.Misses - m0;
        return $"plan-cache hit rate over a {steps}-step training-like loop (MLP 64→128→10, cross-entropy, grads, SGD, new batch each step): " +
               $"{hits}/{hits + misses} = {100.0 * hits / (hits + misses):F0}%";
    }

    /// <summary>RMSNorm → q/k/v/o (16 heads of 64, causal attention as primitives) → residual → RMSNorm → SwiGLU 1024→2816→1024 → residual.</summary>
    internal sealed class Layer
    {
        private readonly Tensor _wq = W(D, D, 11), _wk = W(D, D, 12), _wv = W(D, D, 13), _wo = W(D, D, 14);
        private readonly Tensor _wg = W(D, Ffn, 15), _wu = W(D, Ffn, 16), _wd = W(Ffn, D, 17);
        private readonly Tensor _n1 = Norm(), _n2 = Norm();   // data, not fills (a fill of ones would simplify away)

        private static Tensor Norm() => Tensor.FromArray(Enumerable.Repeat(1f, D).ToArray());

        private static Tensor W(int i, int o, int seed) => Tensor.RandomNormal([i, o], seed, std: 1 / Math.Sqrt(i));

        private static Tensor RmsNorm(Tensor x, Tensor w) => x * (x.Square().Mean([-1], keepDim: true) + 1e-6).Rsqrt() * w;

        public Tensor Forward(Tensor x)
        {
            int b = x.Dim(0), t = x.Dim(1);
            Tensor Split(Tensor y) => y.Reshape(b, t, Heads, HeadDim).Permute(0, 2, 1, 3);
            var h = RmsNorm(x, _n1);
            Tensor q = Split(h.MatMul(_wq)), k = Split(h.MatMul(_wk)), v = Split(h.MatMul(_wv));
            var scores = Ops.CausalMask(q.MatMul(k.T) * (1.0 / Math.Sqrt(HeadDim)));
            var att = scores.Softmax(-1).MatMul(v).Permute(0, 2, 1, 3).Reshape(b, t, D);
            var x2 = x + att.MatMul(_wo);
            var h2 = RmsNorm(x2, _n2);
            return x2 + (h2.MatMul(_wg).Silu() * h2.MatMul(_wu)).MatMul(_wd);
        }
    }
}
