namespace Kiln.LoRA.Tokenizers;

/// <summary>Picks and loads the right tokenizer for a file or a model directory.</summary>
public static class TokenizerLoader
{
    /// <summary>
    /// <c>*.bin</c> → <see cref="Llama2cTokenizer"/>; <c>tokenizer.json</c> or <c>tokenizer.json.gz</c> →
    /// <see cref="HfBpeTokenizer"/>; <c>encoder.json[.gz]</c> (with <c>vocab.bpe</c> beside it) → GPT-2.
    /// A directory is searched for tokenizer.json[.gz], then encoder.json[.gz] + vocab.bpe, then a single *.bin.
    /// Throws <see cref="FileNotFoundException"/> when nothing usable is there and
    /// <see cref="InvalidDataException"/> for a damaged or unsupported file.
    /// </summary>
    public static ITokenizer Load(string path)
    {
        if (Directory.Exists(path)) return LoadFromDirectory(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer file or directory not found: {path}", path);

        string name = Path.GetFileName(path).ToLowerInvariant();
        if (name.EndsWith(".bin")) return Llama2cTokenizer.Load(path);
        if (name is "encoder.json" or "encoder.json.gz") return LoadGpt2(Path.GetDirectoryName(Path.GetFullPath(path))!, path);
        if (name.EndsWith(".json") || name.EndsWith(".json.gz")) return HfTokenizerJson.Load(path);
        throw new InvalidDataException($"{Path.GetFileName(path)}: unknown tokenizer format (expected tokenizer.json[.gz], encoder.json[.gz] or a llama2.c *.bin)");
    }

    private static ITokenizer LoadFromDirectory(string dir)
    {
        if (TokenizerFile.PlainOrGzip(Path.Combine(dir, "tokenizer.json")) is { } json) return HfTokenizerJson.Load(json);
        if (TokenizerFile.PlainOrGzip(Path.Combine(dir, "encoder.json")) is { } encoder) return LoadGpt2(dir, encoder);
        string[] bins = Directory.GetFiles(dir, "*.bin");
        // Model directories may also hold a llama2.c checkpoint (*.bin); prefer names that say "tok".
        string[] tokenizerBins = [.. bins.Where(b => Path.GetFileName(b).Contains("tok", StringComparison.OrdinalIgnoreCase))];
        string[] candidates = tokenizerBins.Length > 0 ? tokenizerBins : bins;
        if (candidates.Length == 1) return Llama2cTokenizer.Load(candidates[0]);
        if (candidates.Length > 1)
            throw new InvalidDataException($"{dir}: several *.bin files ({string.Join(", ", candidates.Select(Path.GetFileName))}); pass the tokenizer file itself");
        throw new FileNotFoundException($"{dir}: no tokenizer.json[.gz], encoder.json[.gz] + vocab.bpe or llama2.c *.bin tokenizer found", dir);
    }

    private static HfBpeTokenizer LoadGpt2(string dir, string encoderPath)
    {
        string merges = TokenizerFile.PlainOrGzip(Path.Combine(dir, "vocab.bpe"))
            ?? throw new FileNotFoundException($"{dir}: encoder.json needs vocab.bpe (the GPT-2 merges) beside it", Path.Combine(dir, "vocab.bpe"));
        return Gpt2BpeFiles.Load(encoderPath, merges);
    }
}
