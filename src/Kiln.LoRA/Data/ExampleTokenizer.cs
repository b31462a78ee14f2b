using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Data;

/// <summary>Turns <see cref="TrainingExample"/>s into ids plus a per-id loss mask.</summary>
/// <remarks>
/// Every example is one document: the tokenizer's own special-token rule applies at its start
/// (<c>Encode(.., addSpecial: true)</c>, i.e. BOS where the tokenizer uses one) and EOS is appended at its end
/// when the tokenizer has one. Position 0 is never a target (see <see cref="TokenizedExample"/>).
/// <list type="bullet">
/// <item>text: every other token, EOS included, is trained.</item>
/// <item>prompt/completion: prompt and completion are encoded separately and concatenated, so the mask
/// boundary is exact (a merged encoding could fuse tokens across it); prompt tokens are masked unless
/// <c>trainOnPrompt</c>. The completion and EOS are trained.</item>
/// <item>messages: the conversation is rendered prefix by prefix. For assistant turn i, its span is the text
/// between <c>Render(messages[..i], addGenerationPrompt: true)</c> and <c>Render(messages[..(i+1)], false)</c>,
/// so the assistant header is not trained but the content and whatever the template closes the turn with
/// (e.g. <c>&lt;|im_end|&gt;</c>) is. The text is cut at span boundaries and each piece encoded separately.
/// A template whose renders are not prefixes of one another is rejected. EOS is trained only when the
/// conversation ends with an assistant turn (in general: EOS is trained when the last non-empty text before it is). If the rendered text already starts with the BOS token's text
/// (templates such as Llama-3's write <c>&lt;|begin_of_text|&gt;</c> themselves) no second BOS is added.</item>
/// </list>
/// </remarks>
public sealed class ExampleTokenizer
{
    private readonly ITokenizer _tokenizer;
    private readonly IChatTemplate? _template;
    private readonly bool _trainOnPrompt;

    /// <param name="tokenizer">Encodes the text.</param>
    /// <param name="chatTemplate">Needed only for <see cref="ChatExample"/>s.</param>
    /// <param name="trainOnPrompt">Also train prompt tokens of prompt/completion examples.</param>
    public ExampleTokenizer(ITokenizer tokenizer, IChatTemplate? chatTemplate = null, bool trainOnPrompt = false)
    {
        _tokenizer = tokenizer;
        _template = chatTemplate;
        _trainOnPrompt = trainOnPrompt;
    }

    /// <summary>Reads <paramref name="path"/> (<see cref="DataFileReader.Read"/>) and tokenizes every example.</summary>
    public TokenizedExample[] TokenizeFile(string path) => TokenizeAll(DataFileReader.Read(path));

    /// <summary>Tokenizes every example, in order.</summary>
    public TokenizedExample[] TokenizeAll(IEnumerable<TrainingExample> examples) => [.. examples.Select(Tokenize)];

    /// <summary>Tokenizes one example.</summary>
    /// <exception cref="DataFormatException">A chat example without a template, or a template that is not prefix-stable.</exception>
    public TokenizedExample Tokenize(TrainingExample example)
    {
        List<(string Text, bool Trained)> pieces = example switch
        {
            TextExample t => [(t.Text, true)],
            PromptCompletionExample pc => [(pc.Prompt, _trainOnPrompt), (pc.Completion, true)],
            ChatExample c => ChatPieces(c),
            _ => throw new ArgumentException($"unknown example type {example.GetType().Name}", nameof(example)),
        };
        return Assemble(pieces, addSpecial: !StartsWithBosText(pieces));
    }

    private List<(string Text, bool Trained)> ChatPieces(ChatExample chat)
    {
        var at = chat.Source;
        if (_template is null)
            throw new DataFormatException(at.FilePath, at.Line,
                "\"messages\" examples need a chat template, and none was given (pass an IChatTemplate, e.g. the model's)");

        var messages = chat.Messages;
        var pieces = new List<(string, bool)>();
        string done = "";   // rendered text already split into pieces
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i].Role != "assistant") continue;
            string before = _template.Render(Prefix(messages, i), addGenerationPrompt: true);
            string after = _template.Render(Prefix(messages, i + 1), addGenerationPrompt: false);
            if (!before.StartsWith(done, StringComparison.Ordinal) || !after.StartsWith(before, StringComparison.Ordinal))
                throw NotPrefixStable(at, i);
            pieces.Add((before[done.Length..], false));
            pieces.Add((after[before.Length..], true));
            done = after;
        }
        string full = _template.Render(messages, addGenerationPrompt: false);
        if (!full.StartsWith(done, StringComparison.Ordinal)) throw NotPrefixStable(at, messages.Count - 1);
        pieces.Add((full[done.Length..], false));
        return pieces;
    }

    private static ChatMessage[] Prefix(IReadOnlyList<ChatMessage> messages, int count) => [.. messages.Take(count)];

    private static DataFormatException NotPrefixStable(SourceLocation at, int turn) =>
        new(at.FilePath, at.Line,
            $"the chat template's rendering of messages[..{turn + 1}] does not extend the rendering of the earlier turns, " +
            "so assistant spans cannot be located (the template must render prefixes of a conversation as text prefixes)");

    private bool StartsWithBosText(List<(string Text, bool Trained)> pieces)
    {
        if (_tokenizer.BosId is not { } bos) return false;
        string bosText = _tokenizer.Decode([bos], skipSpecial: false);
        var first = pieces.FirstOrDefault(p => p.Text.Length > 0).Text;
        return bosText.Length > 0 && first is not null && first.StartsWith(bosText, StringComparison.Ordinal);
    }

    private TokenizedExample Assemble(List<(string Text, bool Trained)> pieces, bool addSpecial)
    {
        var ids = new List<int>();
        var trained = new List<bool>();
        bool first = true, lastTrained = true;
        foreach (var (text, isTrained) in pieces)
        {
            // Empty pieces (an empty prompt, a template writing nothing after the last turn) add nothing,
            // but the first piece still carries BOS.
            if (text.Length == 0 && !first) continue;
            var pieceIds = _tokenizer.Encode(text, addSpecial: first && addSpecial);
            ids.AddRange(pieceIds);
            trained.AddRange(Enumerable.Repeat(isTrained, pieceIds.Length));
            if (text.Length > 0) lastTrained = isTrained;
            first = false;
        }
        if (_tokenizer.EosId is { } eos)
        {
            ids.Add(eos);
            trained.Add(lastTrained);
        }
        if (trained.Count > 0) trained[0] = false;
        return new TokenizedExample([.. ids], [.. trained]);
    }
}
