using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kiln.LoRA.Models;

/// <summary>Llama-3 style RoPE frequency scaling ("rope_type": "llama3").</summary>
public sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositions);

/// <summary>
/// The architecture of a Llama or Qwen2 decoder, read from a Hugging Face config.json. Both the
/// transformers 4 spelling (top-level rope_theta / rope_scaling) and the transformers 5 one
/// (rope_parameters) are understood.
/// </summary>
public sealed record ModelConfig
{
    public required string ModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    public Llama3RopeScaling? RopeScaling { get; init; }
    /// <summary>Biases on q/k/v (Qwen2 always; Llama when attention_bias is true).</summary>
    public bool QkvBias { get; init; }
    /// <summary>Bias on o_proj (Llama's attention_bias also covers it; Qwen2 has none).</summary>
    public bool OutputBias { get; init; }
    public bool MlpBias { get; init; }
    public bool TieWordEmbeddings { get; init; }
    public int MaxPositions { get; init; } = 2048;
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    public int KvDim => KvHeads * HeadDim;

    public static ModelConfig Load(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"model config not found: {path}", path);
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
        if (root is not JsonObject obj) throw new InvalidDataException($"{path}: expected a JSON object");
        return Parse(obj, path);
    }

    public static ModelConfig Parse(JsonObject c, string source = "config.json")
    {
        string type = Str(c, "model_type", source) ?? throw Bad(source, "model_type is missing");
        if (type is not ("llama" or "qwen2" or "mistral"))
            throw Bad(source, $"model_type '{type}' is not supported (supported: llama, qwen2, mistral)");
        string act = Str(c, "hidden_act", source) ?? "silu";
        if (act != "silu") throw Bad(source, $"hidden_act '{act}' is not supported (Llama/Qwen2 use silu)");
        int hidden = Int(c, "hidden_size", source), heads = Int(c, "num_attention_heads", source);
        int kvHeads = IntOr(c, "num_key_value_heads", heads, source);
        if (hidden % heads != 0 && c["head_dim"] is null) throw Bad(source, $"hidden_size {hidden} is not divisible by num_attention_heads {heads}");
        int headDim = IntOr(c, "head_dim", hidden / heads, source);
        if (heads % kvHeads != 0) throw Bad(source, $"num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}");
        if (headDim % 2 != 0) throw Bad(source, $"head_dim {headDim} must be even for rotary embeddings");

        var rope = c["rope_parameters"] as JsonObject;
        double theta = Num(rope, "rope_theta") ?? Num(c, "rope_theta") ?? 10000;
        var scalingNode = (c["rope_scaling"] as JsonObject) ?? rope;
        Llama3RopeScaling? scaling = null;
        string? ropeType = scalingNode is null ? null : (Str(scalingNode, "rope_type", source) ?? Str(scalingNode, "type", source));
        if (ropeType == "llama3")
            scaling = new Llama3RopeScaling(Num(scalingNode, "factor") ?? 8, Num(scalingNode, "low_freq_factor") ?? 1,
                Num(scalingNode, "high_freq_factor") ?? 4, (int)(Num(scalingNode, "original_max_position_embeddings") ?? 8192));
        else if (ropeType is not (null or "default"))
            throw Bad(source, $"rope scaling type '{ropeType}' is not supported (supported: default, llama3)");

        bool qwen = type == "qwen2";
        bool attnBias = c["attention_bias"]?.GetValue<bool>() ?? false;
        var cfg = new ModelConfig
        {
            ModelType = type,
            VocabSize = Int(c, "vocab_size", source),
            HiddenSize = hidden,
            IntermediateSize = Int(c, "intermediate_size", source),
            Layers = Int(c, "num_hidden_layers", source),
            Heads = heads,
            KvHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = Num(c, "rms_norm_eps") ?? 1e-6,
            RopeTheta = theta,
            RopeScaling = scaling,
            QkvBias = qwen || attnBias,
            OutputBias = !qwen && attnBias,
            MlpBias = c["mlp_bias"]?.GetValue<bool>() ?? false,
            TieWordEmbeddings = c["tie_word_embeddings"]?.GetValue<bool>() ?? false,
            MaxPositions = IntOr(c, "max_position_embeddings", 2048, source),
            BosTokenId = c["bos_token_id"] is JsonValue b && b.TryGetValue<int>(out int bos) ? bos : null,
            EosTokenIds = c["eos_token_id"] switch
            {
                JsonValue v when v.TryGetValue<int>(out int e) => [e],
                JsonArray a => a.Select(x => x!.GetValue<int>()).ToArray(),
                _ => [],
            },
        };
        if (cfg.VocabSize < 1 || cfg.IntermediateSize < 1 || cfg.Layers < 1 || heads < 1 || kvHeads < 1)
            throw Bad(source, "vocab_size, intermediate_size, num_hidden_layers and the head counts must be positive");
        return cfg;
    }

    /// <summary>The config.json a Hugging Face loader expects for this architecture (used by `kiln fuse`).</summary>
    public JsonObject ToJson() => new()
    {
        ["architectures"] = new JsonArray(ModelType == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"),
        ["model_type"] = ModelType,
        ["vocab_size"] = VocabSize,
        ["hidden_size"] = HiddenSize,
        ["intermediate_size"] = IntermediateSize,
        ["num_hidden_layers"] = Layers,
        ["num_attention_heads"] = Heads,
        ["num_key_value_heads"] = KvHeads,
        ["head_dim"] = HeadDim,
        ["hidden_act"] = "silu",
        ["max_position_embeddings"] = MaxPositions,
        ["rms_norm_eps"] = RmsNormEps,
        ["rope_theta"] = RopeTheta,
        ["rope_scaling"] = RopeScaling is null ? null : new JsonObject
        {
            ["rope_type"] = "llama3", ["factor"] = RopeScaling.Factor, ["low_freq_factor"] = RopeScaling.LowFreqFactor,
            ["high_freq_factor"] = RopeScaling.HighFreqFactor, ["original_max_position_embeddings"] = RopeScaling.OriginalMaxPositions,
        },
        ["attention_bias"] = ModelType != "qwen2" && QkvBias,
        ["mlp_bias"] = MlpBias,
        ["tie_word_embeddings"] = TieWordEmbeddings,
        ["bos_token_id"] = BosTokenId,
        ["eos_token_id"] = EosTokenIds.Count == 1 ? EosTokenIds[0] : new JsonArray(EosTokenIds.Select(e => (JsonNode)e).ToArray()),
        ["torch_dtype"] = "float32",
    };

    private static InvalidDataException Bad(string source, string what) => new($"{source}: {what}");

    private static string? Str(JsonObject c, string key, string source) => c[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        var other => throw Bad(source, $"{key} should be a string, got {other.ToJsonString()}"),
    };

    /// <summary>A number whatever its JSON spelling or CLR backing (64, 64.0 and a JsonValue made from an int alike).</summary>
    private static double? Num(JsonObject? c, string key) =>
        c?[key] is JsonValue v && v.GetValueKind() == JsonValueKind.Number
            ? double.Parse(v.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture) : null;

    private static int Int(JsonObject c, string key, string source) => c[key] switch
    {
        null => throw Bad(source, $"{key} is missing"),
        JsonValue v when v.TryGetValue<int>(out int i) => i > 0 ? i : throw Bad(source, $"{key} must be positive, got {i}"),
        var other => throw Bad(source, $"{key} should be an integer, got {other.ToJsonString()}"),
    };

    private static int IntOr(JsonObject c, string key, int fallback, string source) => c[key] is null ? fallback : Int(c, key, source);
}
