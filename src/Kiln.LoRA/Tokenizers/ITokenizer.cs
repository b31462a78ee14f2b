namespace Kiln.LoRA.Tokenizers;

/// <summary>Text to token ids and back. Implementations are immutable and safe to share across threads.</summary>
public interface ITokenizer
{
    int VocabSize { get; }

    /// <summary>Beginning-of-sequence id, or null when the tokenizer has none.</summary>
    int? BosId { get; }

    /// <summary>End-of-sequence id (the id generation stops on), or null when the tokenizer has none.</summary>
    int? EosId { get; }

    /// <summary>Encodes <paramref name="text"/>. With <paramref name="addSpecial"/> the tokenizer's own
    /// special-token rule applies (BOS for Llama-2/3 style tokenizers, nothing for GPT-2 or Qwen).</summary>
    int[] Encode(string text, bool addSpecial = false);

    /// <summary>Decodes ids back to text; special tokens (BOS/EOS) are dropped when <paramref name="skipSpecial"/>.</summary>
    string Decode(ReadOnlySpan<int> ids, bool skipSpecial = true);
}

/// <summary>One chat turn: role is "system", "user" or "assistant".</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>Renders chat turns to the text a model was trained on (Llama-3 headers, ChatML for Qwen2).</summary>
public interface IChatTemplate
{
    string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt);
}
