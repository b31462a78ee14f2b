using System.Text;
using System.Text.Json;

namespace Kiln.LoRA.Tokenizers;

/// <summary>Reads the original GPT-2 tokenizer files: <c>encoder.json</c> (token → id, plain or gzipped) and
/// <c>vocab.bpe</c> (a "#version" line, then one "a b" merge per line in rank order). Splits with GPT-2's regex;
/// "&lt;|endoftext|&gt;" is a special token (as in Hugging Face's GPT-2 tokenizer) and the EOS.</summary>
public static class Gpt2BpeFiles
{
    public const string EndOfText = "<|endoftext|>";

    /// <summary>Loads GPT-2 from encoder.json[.gz] and vocab.bpe[.gz].</summary>
    public static HfBpeTokenizer Load(string encoderJsonPath, string vocabBpePath)
    {
        byte[] encoder = TokenizerFile.ReadAllBytes(encoderJsonPath);
        byte[] merges = TokenizerFile.ReadAllBytes(vocabBpePath);
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        string encoderName = Path.GetFileName(encoderJsonPath), mergesName = Path.GetFileName(vocabBpePath);
        try
        {
            using var doc = JsonDocument.Parse(encoder);
            foreach (var p in doc.RootElement.EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{encoderName}: not a JSON object of token → id ({e.Message})", e);
        }

        var mergeList = new List<(string, string)>();
        string[] lines = Encoding.UTF8.GetString(merges).Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].TrimEnd('\r');
            if (line.Length == 0 || (i == 0 && line.StartsWith("#version"))) continue;
            if (line.Split(' ') is not [var left, var right])
                throw new InvalidDataException($"{mergesName}: line {i + 1} is not a merge \"a b\": \"{line}\"");
            mergeList.Add((left, right));
        }

        var added = new List<AddedToken>();
        int? eos = vocab.TryGetValue(EndOfText, out int eot) ? eot : null;
        if (eos is int eosId) added.Add(new AddedToken(eosId, EndOfText, Special: true));
        var split = new ByteLevelStep(addPrefixSpace: false, PreTokenizerStep.CompileSplitRegex(PreTokenizerStep.Gpt2Pattern));
        return new HfBpeTokenizer(new BpeDefinition(encoderName, vocab, mergeList, added, [], [split],
            IgnoreMerges: false, PrefixIds: [], SuffixIds: [], BosId: null, EosId: eos));
    }
}
