using System.Text.Json.Nodes;
using Kiln.LoRA.Models;

namespace Kiln.LoRA.Tests.Models;

/// <summary>Small random Llama/Qwen2 configs and weights for tests that need no files.</summary>
internal static class RandomModel
{
    public static ModelConfig Config(string type = "llama", bool tied = false, int heads = 4, int kvHeads = 2, int hidden = 32, int layers = 2, int vocab = 40) =>
        ModelConfig.Parse(new JsonObject
        {
            ["model_type"] = type, ["vocab_size"] = vocab, ["hidden_size"] = hidden, ["intermediate_size"] = 48,
            ["num_hidden_layers"] = layers, ["num_attention_heads"] = heads, ["num_key_value_heads"] = kvHeads,
            ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["tie_word_embeddings"] = tied,
        });

    public static Dictionary<string, float[]> Weights(ModelConfig c, int seed)
    {
        var rng = new Random(seed);
        var w = new Dictionary<string, float[]>();
        float[] R(int n, double scale, double mean = 0) => Enumerable.Range(0, n).Select(_ => (float)(mean + scale * (rng.NextDouble() * 2 - 1))).ToArray();
        int d = c.HiddenSize, f = c.IntermediateSize, qd = c.Heads * c.HeadDim;
        w["model.embed_tokens.weight"] = R(c.VocabSize * d, 1);
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            w[p + "input_layernorm.weight"] = R(d, 0.2, 1);
            w[p + "post_attention_layernorm.weight"] = R(d, 0.2, 1);
            w[p + "self_attn.q_proj.weight"] = R(qd * d, 0.3);
            w[p + "self_attn.k_proj.weight"] = R(c.KvDim * d, 0.3);
            w[p + "self_attn.v_proj.weight"] = R(c.KvDim * d, 0.3);
            w[p + "self_attn.o_proj.weight"] = R(d * qd, 0.3);
            if (c.QkvBias)
            {
                w[p + "self_attn.q_proj.bias"] = R(qd, 0.2);
                w[p + "self_attn.k_proj.bias"] = R(c.KvDim, 0.2);
                w[p + "self_attn.v_proj.bias"] = R(c.KvDim, 0.2);
            }
            w[p + "mlp.gate_proj.weight"] = R(f * d, 0.3);
            w[p + "mlp.up_proj.weight"] = R(f * d, 0.3);
            w[p + "mlp.down_proj.weight"] = R(d * f, 0.3);
        }
        w["model.norm.weight"] = R(d, 0.2, 1);
        if (!c.TieWordEmbeddings) w["lm_head.weight"] = R(c.VocabSize * d, 0.3);
        return w;
    }

    public static Dictionary<string, Tensor> Tensors(ModelConfig c, Dictionary<string, float[]> w) =>
        w.ToDictionary(kv => kv.Key, kv => Tensor.FromArray(kv.Value, Shape(c, kv.Key, kv.Value.Length)));

    private static int[] Shape(ModelConfig c, string name, int n) =>
        name.EndsWith(".bias") || name.EndsWith("norm.weight") ? [n] : [n / Cols(c, name), Cols(c, name)];

    private static int Cols(ModelConfig c, string name) =>
        name.Contains("down_proj") ? c.IntermediateSize : name.Contains("o_proj") ? c.Heads * c.HeadDim : c.HiddenSize;

    public static CausalLM Build(ModelConfig c, int seed, out Dictionary<string, float[]> weights)
    {
        weights = Weights(c, seed);
        return CausalLM.FromWeights(c, Tensors(c, weights));
    }
}
