using System.Text;
using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Tests.Data;

/// <summary>Byte-level test tokenizer: each UTF-8 byte b is id b+3; BOS = 1 (added by addSpecial), EOS = 2.</summary>
internal sealed class ByteTokenizer : ITokenizer
{
    public int VocabSize => 259;
    public int? BosId => 1;
    public int? EosId => 2;

    public int[] Encode(string text, bool addSpecial = false)
    {
        var bytes = Encoding.UTF8.GetBytes(text).Select(b => b + 3);
        return addSpecial ? [1, .. bytes] : [.. bytes];
    }

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecial = true)
    {
        var sb = new StringBuilder();
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            if (id >= 3) { bytes.Add((byte)(id - 3)); continue; }
            sb.Append(Encoding.UTF8.GetString([.. bytes])); bytes.Clear();
            if (!skipSpecial) sb.Append(id == 1 ? "<s>" : "</s>");
        }
        return sb.Append(Encoding.UTF8.GetString([.. bytes])).ToString();
    }

    /// <summary>Expected ids of <paramref name="text"/> without specials, computed independently of Encode.</summary>
    public static int[] Bytes(string text) => [.. Encoding.UTF8.GetBytes(text).Select(b => (int)b + 3)];
}

/// <summary>A tiny prefix-stable chat template: each turn renders as "[r]content|" with r the role's first
/// letter; the generation prompt is "[a]".</summary>
internal sealed class TinyChatTemplate(string preamble = "") : IChatTemplate
{
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        preamble + string.Concat(messages.Select(m => $"[{m.Role[0]}]{m.Content}|")) + (addGenerationPrompt ? "[a]" : "");
}

/// <summary>Not prefix-stable: the rendering starts with the number of turns.</summary>
internal sealed class CountingChatTemplate : IChatTemplate
{
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        messages.Count + ":" + string.Concat(messages.Select(m => $"[{m.Role[0]}]{m.Content}|")) + (addGenerationPrompt ? "[a]" : "");
}
