using System.Text;
using System.Text.Json;

namespace Kiln.LoRA.Tokenizers;

/// <summary>
/// Reads a Hugging Face <c>tokenizer.json</c> (plain or gzipped) describing a byte-level BPE tokenizer, plus the
/// <c>tokenizer_config.json</c> beside it when present (bos/eos tokens, add_bos_token/add_eos_token).
/// Supported: normalizer null/NFC/NFD/NFKC/NFKD/Sequence; pre_tokenizer Split (Regex or String, Isolated),
/// ByteLevel, Sequence; post_processor ByteLevel, TemplateProcessing, Sequence. Anything else is rejected
/// with an <see cref="InvalidDataException"/> rather than silently tokenizing differently.
/// </summary>
public static class HfTokenizerJson
{
    /// <summary>Loads tokenizer.json or tokenizer.json.gz at <paramref name="path"/>.</summary>
    public static HfBpeTokenizer Load(string path)
    {
        byte[] json = TokenizerFile.ReadAllBytes(path);
        string dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        string? configPath = TokenizerFile.PlainOrGzip(Path.Combine(dir, "tokenizer_config.json"));
        byte[]? config = configPath == null ? null : TokenizerFile.ReadAllBytes(configPath);
        return Parse(json, config, Path.GetFileName(path));
    }

    /// <summary>Builds a tokenizer from tokenizer.json bytes and optional tokenizer_config.json bytes.</summary>
    public static HfBpeTokenizer Parse(byte[] tokenizerJson, byte[]? tokenizerConfigJson = null, string source = "tokenizer.json")
    {
        try
        {
            using var doc = JsonDocument.Parse(tokenizerJson, new JsonDocumentOptions { MaxDepth = 256 });
            using var config = tokenizerConfigJson == null ? null : JsonDocument.Parse(tokenizerConfigJson);
            return Build(doc.RootElement, config?.RootElement, source);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not valid JSON ({e.Message})", e);
        }
        catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or FormatException)
        {
            // JsonElement throws these for a wrong value kind or a missing property: a malformed file.
            throw new InvalidDataException($"{source}: malformed tokenizer.json ({e.Message})", e);
        }
    }

    private static HfBpeTokenizer Build(JsonElement root, JsonElement? config, string source)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model))
            throw new InvalidDataException($"{source}: no \"model\" object; not a Hugging Face tokenizer.json");
        string modelType = model.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "BPE";
        if (modelType != "BPE")
            throw new InvalidDataException($"{source}: model type \"{modelType}\" is not supported (only byte-level BPE)");
        if (model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True)
            throw new InvalidDataException($"{source}: BPE with byte_fallback (SentencePiece-style) is not supported");
        foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryGetProperty(affix, out var a) && a.ValueKind == JsonValueKind.String && a.GetString() != "")
                throw new InvalidDataException($"{source}: BPE {affix} \"{a.GetString()}\" is not supported");

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in model.GetProperty("vocab").EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();

        var merges = new List<(string, string)>();
        int index = 0;
        foreach (var m in model.GetProperty("merges").EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2)
                merges.Add((m[0].GetString()!, m[1].GetString()!));
            else if (m.ValueKind == JsonValueKind.String && m.GetString()!.Split(' ') is [var left, var right])
                merges.Add((left, right));
            else
                throw new InvalidDataException($"{source}: merge {index} is neither \"a b\" nor [\"a\", \"b\"]: {m.GetRawText()}");
            index++;
        }
        bool ignoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;

        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens", out var addedJson) && addedJson.ValueKind == JsonValueKind.Array)
            foreach (var a in addedJson.EnumerateArray())
                added.Add(new AddedToken(a.GetProperty("id").GetInt32(), a.GetProperty("content").GetString()!,
                    Flag(a, "special"), Flag(a, "lstrip"), Flag(a, "rstrip")));

        var normalizers = new List<NormalizerStep>();
        if (root.TryGetProperty("normalizer", out var norm)) AddNormalizers(norm, normalizers, source);
        var preTokenizers = new List<PreTokenizerStep>();
        if (root.TryGetProperty("pre_tokenizer", out var pre)) AddPreTokenizers(pre, preTokenizers, source);

        var prefix = new List<int>();
        var suffix = new List<int>();
        if (root.TryGetProperty("post_processor", out var post)) ReadPostProcessor(post, prefix, suffix, source);

        int? IdOf(string? token) =>
            token == null ? null : added.FirstOrDefault(a => a.Content == token)?.Id ?? (vocab.TryGetValue(token, out int id) ? id : null);

        int? bos = prefix.Count > 0 ? prefix[0] : null;
        int? eos = IdOf(new[] { "<|end_of_text|>", "<|endoftext|>", "</s>" }.FirstOrDefault(n => IdOf(n) != null));
        if (config is { ValueKind: JsonValueKind.Object } c)
        {
            if (c.TryGetProperty("bos_token", out var b)) bos = IdOf(TokenText(b));
            if (c.TryGetProperty("eos_token", out var e)) eos = IdOf(TokenText(e)) ?? eos;
            // Tokenizers whose tokenizer.json lacks TemplateProcessing rely on these flags instead.
            if (Flag(c, "add_bos_token") && bos is int bosId && (prefix.Count == 0 || prefix[0] != bosId)) prefix.Insert(0, bosId);
            if (Flag(c, "add_eos_token") && eos is int eosId && (suffix.Count == 0 || suffix[^1] != eosId)) suffix.Add(eosId);
        }

        return new HfBpeTokenizer(new BpeDefinition(source, vocab, merges, added, normalizers, preTokenizers,
            ignoreMerges, prefix, suffix, bos, eos));
    }

    private static bool Flag(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;

    private static string? TokenText(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Object when e.TryGetProperty("content", out var c) => c.GetString(),
        _ => null,
    };

    private static string TypeOf(JsonElement e, string source, string what) =>
        e.TryGetProperty("type", out var t) ? t.GetString() ?? "" : throw new InvalidDataException($"{source}: {what} without a \"type\"");

    private static void AddNormalizers(JsonElement n, List<NormalizerStep> output, string source)
    {
        if (n.ValueKind == JsonValueKind.Null) return;
        switch (TypeOf(n, source, "normalizer"))
        {
            case "NFC": output.Add(new NormalizerStep(NormalizationForm.FormC)); break;
            case "NFD": output.Add(new NormalizerStep(NormalizationForm.FormD)); break;
            case "NFKC": output.Add(new NormalizerStep(NormalizationForm.FormKC)); break;
            case "NFKD": output.Add(new NormalizerStep(NormalizationForm.FormKD)); break;
            case "Sequence":
                foreach (var inner in n.GetProperty("normalizers").EnumerateArray()) AddNormalizers(inner, output, source);
                break;
            case var other: throw new InvalidDataException($"{source}: normalizer \"{other}\" is not supported");
        }
    }

    private static void AddPreTokenizers(JsonElement p, List<PreTokenizerStep> output, string source)
    {
        if (p.ValueKind == JsonValueKind.Null) return;
        switch (TypeOf(p, source, "pre_tokenizer"))
        {
            case "Sequence":
                foreach (var inner in p.GetProperty("pretokenizers").EnumerateArray()) AddPreTokenizers(inner, output, source);
                break;
            case "Split":
                string behavior = p.TryGetProperty("behavior", out var b) ? b.GetString() ?? "" : "Isolated";
                if (behavior != "Isolated")
                    throw new InvalidDataException($"{source}: Split behavior \"{behavior}\" is not supported (only Isolated)");
                var pattern = p.GetProperty("pattern");
                string regex = pattern.TryGetProperty("Regex", out var r) ? r.GetString()!
                    : System.Text.RegularExpressions.Regex.Escape(pattern.GetProperty("String").GetString()!);
                output.Add(new RegexSplitStep(PreTokenizerStep.CompileSplitRegex(regex), Flag(p, "invert")));
                break;
            case "ByteLevel":
                bool useRegex = !p.TryGetProperty("use_regex", out var u) || u.ValueKind != JsonValueKind.False;
                output.Add(new ByteLevelStep(Flag(p, "add_prefix_space"),
                    useRegex ? PreTokenizerStep.CompileSplitRegex(PreTokenizerStep.Gpt2Pattern) : null));
                break;
            case var other: throw new InvalidDataException($"{source}: pre_tokenizer \"{other}\" is not supported");
        }
    }

    private static void ReadPostProcessor(JsonElement p, List<int> prefix, List<int> suffix, string source)
    {
        if (p.ValueKind == JsonValueKind.Null) return;
        switch (TypeOf(p, source, "post_processor"))
        {
            case "ByteLevel": break; // only adjusts offsets
            case "Sequence":
                foreach (var inner in p.GetProperty("processors").EnumerateArray()) ReadPostProcessor(inner, prefix, suffix, source);
                break;
            case "TemplateProcessing":
                var specials = p.GetProperty("special_tokens");
                bool seenSequence = false;
                foreach (var item in p.GetProperty("single").EnumerateArray())
                {
                    if (item.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
                    string name = item.GetProperty("SpecialToken").GetProperty("id").GetString()!;
                    if (!specials.TryGetProperty(name, out var spec))
                        throw new InvalidDataException($"{source}: TemplateProcessing uses \"{name}\", which special_tokens does not define");
                    foreach (var id in spec.GetProperty("ids").EnumerateArray()) (seenSequence ? suffix : prefix).Add(id.GetInt32());
                }
                break;
            case var other: throw new InvalidDataException($"{source}: post_processor \"{other}\" is not supported");
        }
    }
}
