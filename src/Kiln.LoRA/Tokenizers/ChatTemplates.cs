using System.Text;

namespace Kiln.LoRA.Tokenizers;

/// <summary>
/// Llama-3 Instruct's chat format: "&lt;|begin_of_text|&gt;" once, then per turn
/// "&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ncontent&lt;|eot_id|&gt;" with the content trimmed
/// (the template's <c>message['content'] | trim</c>); the generation prompt opens an assistant header.
/// </summary>
public sealed class Llama3ChatTemplate : IChatTemplate
{
    public const string BeginOfText = "<|begin_of_text|>";
    public const string StartHeader = "<|start_header_id|>";
    public const string EndHeader = "<|end_header_id|>";
    public const string EndOfTurn = "<|eot_id|>";

    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var sb = new StringBuilder(BeginOfText);
        foreach (var m in messages)
            sb.Append(StartHeader).Append(m.Role).Append(EndHeader).Append("\n\n").Append(m.Content.Trim()).Append(EndOfTurn);
        if (addGenerationPrompt) sb.Append(StartHeader).Append("assistant").Append(EndHeader).Append("\n\n");
        return sb.ToString();
    }
}

/// <summary>
/// ChatML as Qwen2-Instruct's chat template renders it: "&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n" per
/// turn, preceded by a default system turn ("You are a helpful assistant.") when the first message is not a
/// system message, and "&lt;|im_start|&gt;assistant\n" as the generation prompt. Contents are not trimmed.
/// Qwen3's template differs (no default system turn; "&lt;think&gt;" blocks around the last assistant turns),
/// so this is Qwen2's format; pass <c>defaultSystemMessage: null</c> for plain ChatML.
/// </summary>
public sealed class ChatMLTemplate(string? defaultSystemMessage = ChatMLTemplate.Qwen2DefaultSystemMessage) : IChatTemplate
{
    public const string Qwen2DefaultSystemMessage = "You are a helpful assistant.";
    public const string ImStart = "<|im_start|>";
    public const string ImEnd = "<|im_end|>";

    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var sb = new StringBuilder();
        // Qwen2's template emits the default system turn inside its message loop, so an empty list gets none.
        if (defaultSystemMessage != null && messages.Count > 0 && messages[0].Role != "system")
            AppendTurn(sb, "system", defaultSystemMessage);
        foreach (var m in messages) AppendTurn(sb, m.Role, m.Content);
        if (addGenerationPrompt) sb.Append(ImStart).Append("assistant\n");
        return sb.ToString();
    }

    private static void AppendTurn(StringBuilder sb, string role, string content) =>
        sb.Append(ImStart).Append(role).Append('\n').Append(content).Append(ImEnd).Append('\n');
}

/// <summary>Chooses a chat template from a Hugging Face config.json <c>model_type</c>.</summary>
public static class ChatTemplates
{
    /// <summary>
    /// "qwen2" → <see cref="ChatMLTemplate"/> (Qwen2's); "llama" → <see cref="Llama3ChatTemplate"/> when the
    /// tokenizer has Llama-3's header tokens (or no tokenizer is given). Returns null when no template applies
    /// (e.g. a Llama-2 / llama2.c tokenizer, or an unknown model type).
    /// </summary>
    public static IChatTemplate? For(string modelType, ITokenizer? tokenizer = null) => modelType.ToLowerInvariant() switch
    {
        "qwen2" => new ChatMLTemplate(),
        "llama" when tokenizer == null || HasToken(tokenizer, Llama3ChatTemplate.StartHeader) => new Llama3ChatTemplate(),
        _ => null,
    };

    private static bool HasToken(ITokenizer tokenizer, string token) =>
        tokenizer is HfBpeTokenizer hf && hf.TokenToId(token) != null;
}
