// llama2.c legacy ("v0") checkpoints, e.g. the tinyllamas stories260K/15M/42M/110M releases, loaded straight
// into Hugging Face LlamaForCausalLM names and layout, so the rest of Kiln sees one model format.
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kiln.LoRA.IO;

/// <summary>
/// A llama2.c legacy checkpoint: 7 int32 header, then float32 arrays in a fixed order (see data/SOURCES.md,
/// "models/stories260K"). <see cref="Weights"/> uses Hugging Face LlamaForCausalLM names, with q_proj/k_proj
/// rows permuted from llama2.c's interleaved RoPE pairs to HF's half-split layout, exactly as llama2.c's
/// export.py and transformers' convert_llama_weights_to_hf.py do.
/// </summary>
public sealed class Llama2cCheckpoint
{
    /// <summary>The validated header.</summary>
    public Llama2cHeader Header { get; }

    /// <summary>Realised float32 weights by HF name; no lm_head.weight when the classifier is shared.</summary>
    public Dictionary<string, Tensor> Weights { get; }

    private Llama2cCheckpoint(Llama2cHeader header, Dictionary<string, Tensor> weights) { Header = header; Weights = weights; }

    /// <summary>Reads and validates <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">A bad header, or a file size other than the header implies.</exception>
    public static Llama2cCheckpoint Load(string path)
    {
        string file = Path.GetFullPath(path);
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        if (stream.Length < Llama2cHeader.Bytes)
            throw new InvalidDataException($"llama2.c checkpoint '{file}': {stream.Length} bytes, too short for the {Llama2cHeader.Bytes}-byte header (truncated?)");
        var raw = new int[7];
        stream.ReadExactly(MemoryMarshal.AsBytes(raw.AsSpan()));
        var h = Llama2cHeader.FromRaw(file, raw);
        // The format has no magic and no offsets: the exact size is the only check that the arrays are where
        // the header says (a v1 "ak42" export or a different model would otherwise load as garbage).
        if (stream.Length != h.FileBytes)
            throw new InvalidDataException($"llama2.c checkpoint '{file}': header {h} implies {h.FileBytes} bytes, the file has {stream.Length} ({(stream.Length < h.FileBytes ? "truncated?" : "trailing data or not a legacy v0 checkpoint")})");
        return new Llama2cCheckpoint(h, ReadWeights(stream, h));
    }

    private static Dictionary<string, Tensor> ReadWeights(Stream s, Llama2cHeader h)
    {
        int d = h.Dim, hid = h.HiddenDim, kv = h.KvDim, L = h.Layers;
        var w = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        string Layer(int i, string name) => $"model.layers.{i}.{name}.weight";
        // Per-layer reads, in file order: each array group holds all layers before the next group starts.
        void PerLayer(string name, int rows, int cols, Func<float[], float[]>? transform = null)
        {
            for (int i = 0; i < L; i++)
            {
                var values = Read(s, (long)rows * cols);
                w[Layer(i, name)] = Tensor.FromArray(transform == null ? values : transform(values), cols == 1 ? [rows] : [rows, cols]);
            }
        }

        w["model.embed_tokens.weight"] = Tensor.FromArray(Read(s, (long)h.VocabSize * d), [h.VocabSize, d]);
        PerLayer("input_layernorm", d, 1);
        PerLayer("self_attn.q_proj", d, d, q => PermuteRopeRows(q, h.Heads, d, d));
        PerLayer("self_attn.k_proj", kv, d, k => PermuteRopeRows(k, h.KvHeads, kv, d));
        PerLayer("self_attn.v_proj", kv, d);
        PerLayer("self_attn.o_proj", d, d);
        PerLayer("post_attention_layernorm", d, 1);
        PerLayer("mlp.gate_proj", hid, d);
        PerLayer("mlp.down_proj", d, hid);
        PerLayer("mlp.up_proj", hid, d);
        w["model.norm.weight"] = Tensor.FromArray(Read(s, d), [d]);
        s.Seek(2L * h.SeqLen * (h.HeadSize / 2) * sizeof(float), SeekOrigin.Current);   // legacy freq_cis tables: RoPE is recomputed
        if (!h.SharedClassifier) w["lm_head.weight"] = Tensor.FromArray(Read(s, (long)h.VocabSize * d), [h.VocabSize, d]);
        return w;
    }

    private static float[] Read(Stream s, long count)
    {
        if (count > Array.MaxLength) throw new NotSupportedException($"a {count}-element array exceeds what one CPU tensor can hold");
        var values = GC.AllocateUninitializedArray<float>((int)count);
        s.ReadExactly(MemoryMarshal.AsBytes(values.AsSpan()));   // size was checked against the header, so this cannot hit EOF
        return values;
    }

    /// <summary>
    /// llama2.c rotates adjacent pairs (2i, 2i+1) of each head, HF rotates (i, i + head/2). Reordering each
    /// head's rows from [pair0.x, pair0.y, pair1.x, ...] to [pair0.x, pair1.x, ..., pair0.y, pair1.y, ...]
    /// makes HF's rotation compute the same thing: <c>w.view(heads, rows/heads/2, 2, cols).transpose(1, 2)</c>.
    /// </summary>
    internal static float[] PermuteRopeRows(float[] w, int heads, int rows, int cols)
    {
        int half = rows / heads / 2;
        var result = new float[w.Length];
        for (int head = 0; head < heads; head++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                {
                    int src = head * half * 2 + i * 2 + j, dst = head * half * 2 + j * half + i;
                    Array.Copy(w, (long)src * cols, result, (long)dst * cols, cols);
                }
        return result;
    }

    /// <summary>
    /// The Hugging Face config.json equivalent of this checkpoint (LlamaForCausalLM; the same fields
    /// data/hf/stories260K/convert_llama2c_to_hf.py writes). llama2.c models use RMSNorm eps 1e-5 and RoPE theta 1e4.
    /// </summary>
    public JsonObject HfConfig() => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["model_type"] = "llama",
        ["vocab_size"] = Header.VocabSize,
        ["hidden_size"] = Header.Dim,
        ["intermediate_size"] = Header.HiddenDim,
        ["num_hidden_layers"] = Header.Layers,
        ["num_attention_heads"] = Header.Heads,
        ["num_key_value_heads"] = Header.KvHeads,
        ["head_dim"] = Header.HeadSize,
        ["hidden_act"] = "silu",
        ["max_position_embeddings"] = Header.SeqLen,
        ["rms_norm_eps"] = 1e-05,
        ["rope_theta"] = 10000.0,
        ["rope_scaling"] = null,
        ["attention_bias"] = false,
        ["mlp_bias"] = false,
        ["tie_word_embeddings"] = Header.SharedClassifier,
        ["bos_token_id"] = 1,
        ["eos_token_id"] = 2,
        ["torch_dtype"] = "float32",
        ["initializer_range"] = 0.02,
        ["pretraining_tp"] = 1,
        ["use_cache"] = true,
    };

    /// <summary><see cref="HfConfig"/> as indented JSON, ready to be written as config.json.</summary>
    public string HfConfigJson() => HfConfig().ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}
