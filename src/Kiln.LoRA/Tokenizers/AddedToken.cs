namespace Kiln.LoRA.Tokenizers;

/// <summary>A token matched verbatim in the input before any BPE (e.g. "&lt;|im_start|&gt;"). Special ones are
/// dropped by <see cref="ITokenizer.Decode"/> with skipSpecial.</summary>
/// <param name="Lstrip">The match swallows whitespace to its left.</param>
/// <param name="Rstrip">The match swallows whitespace to its right.</param>
public sealed record AddedToken(int Id, string Content, bool Special, bool Lstrip = false, bool Rstrip = false);

/// <summary>Splits text on added tokens, leftmost-longest (as Hugging Face's Aho-Corasick matcher does).</summary>
internal sealed class AddedTokenSplitter
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    /// <summary>Calls <paramref name="onText"/> for each run of ordinary text and <paramref name="onToken"/> for
    /// each added token, in order.</summary>
    public void Split(string text, Action<string> onText, Action<AddedToken> onToken)
    {
        if (_byFirstChar.Count == 0) { if (text.Length > 0) onText(text); return; }
        int textStart = 0;
        for (int i = 0; i < text.Length; i++)
        {
            if (!_byFirstChar.TryGetValue(text[i], out var candidates)) continue;
            AddedToken? match = null;
            foreach (var t in candidates)
                if (string.CompareOrdinal(text, i, t.Content, 0, t.Content.Length) == 0) { match = t; break; }
            if (match == null) continue;

            int start = i, end = i + match.Content.Length;
            if (match.Lstrip) while (start > textStart && char.IsWhiteSpace(text[start - 1])) start--;
            if (match.Rstrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            if (start > textStart) onText(text[textStart..start]);
            onToken(match);
            textStart = end;
            i = end - 1;
        }
        if (textStart < text.Length) onText(text[textStart..]);
    }
}
