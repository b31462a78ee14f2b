using System.Text;
using System.Text.RegularExpressions;

namespace Kiln.LoRA.Tokenizers;

/// <summary>One step of Hugging Face pre-tokenization: turns each piece of text into smaller pieces. BPE
/// never merges across piece boundaries.</summary>
internal abstract class PreTokenizerStep
{
    public abstract void Split(string piece, List<string> output);

    /// <summary>GPT-2's pattern, also what a ByteLevel pre-tokenizer with use_regex applies.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>
    /// Compiles a pre-tokenizer pattern (written for Rust's regex / Oniguruma) as a .NET regex. The patterns in
    /// use (GPT-2, Llama 3, Qwen2) mean the same in .NET with one known gap: .NET matches UTF-16 code units, so
    /// a letter or digit outside the BMP (e.g. CJK Extension B, U+1D400 math letters) is not \p{L}/\p{N} and is
    /// grouped like punctuation. Emoji and BMP scripts are unaffected.
    /// </summary>
    public static Regex CompileSplitRegex(string pattern) =>
        // Compiled: training encodes whole corpora, so matching speed outweighs the one-off compile cost.
        new(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
}

/// <summary>Split with behavior "Isolated": every match, and every stretch between matches, is a piece.</summary>
internal sealed class RegexSplitStep(Regex regex, bool invert = false) : PreTokenizerStep
{
    public override void Split(string piece, List<string> output)
    {
        int last = 0;
        for (var m = regex.Match(piece); m.Success; m = m.NextMatch())
        {
            if (m.Length == 0) continue;
            if (m.Index > last) output.Add(piece[last..m.Index]);
            if (!invert) output.Add(m.Value);
            last = m.Index + m.Length;
        }
        if (last < piece.Length) output.Add(piece[last..]);
    }
}

/// <summary>The ByteLevel pre-tokenizer's splitting part (optional prefix space and GPT-2 regex); the byte to
/// unicode mapping itself happens in <see cref="HfBpeTokenizer"/> for every piece.</summary>
internal sealed class ByteLevelStep(bool addPrefixSpace, Regex? gpt2Regex) : PreTokenizerStep
{
    public override void Split(string piece, List<string> output)
    {
        if (addPrefixSpace && !piece.StartsWith(' ')) piece = " " + piece;
        if (gpt2Regex == null) output.Add(piece);
        else new RegexSplitStep(gpt2Regex).Split(piece, output);
    }
}

/// <summary>Unicode normalization applied to ordinary text before pre-tokenization (Qwen uses NFC).</summary>
internal sealed class NormalizerStep(NormalizationForm form)
{
    public string Apply(string text) => text.IsNormalized(form) ? text : text.Normalize(form);
}
