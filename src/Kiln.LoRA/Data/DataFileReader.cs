using System.Text;
using System.Text.Json;
using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Data;

/// <summary>Reads training examples from a file: <c>.jsonl</c> (one JSON object per line) or <c>.txt</c> (plain text).</summary>
/// <remarks>
/// JSONL lines are one of <c>{"text": s}</c>, <c>{"prompt": s, "completion": s}</c> or
/// <c>{"messages": [{"role": s, "content": s}, ...]}</c>. Other keys on a line are ignored (datasets often carry
/// ids or metadata); a line matching two shapes at once is rejected as ambiguous. Blank lines are skipped.
/// A .txt file is one stream of text; lines consisting only of <see cref="DocumentSeparator"/> split it into
/// documents. Every problem is a <see cref="DataFormatException"/> naming the file and, where it applies, the line.
/// </remarks>
public static class DataFileReader
{
    /// <summary>The separator line GPT-2 style corpora (TinyStories among them) put between documents.</summary>
    public const string DocumentSeparator = "<|endoftext|>";

    /// <summary>Reads every example in <paramref name="path"/>, choosing the format from the extension.</summary>
    public static IReadOnlyList<TrainingExample> Read(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, null, "file not found");
        var ext = Path.GetExtension(path).ToLowerInvariant();
        return ext switch
        {
            ".jsonl" => ReadJsonl(path),
            ".txt" => ReadText(path),
            _ => throw new DataFormatException(path, null, $"unsupported extension '{ext}'; expected .jsonl or .txt"),
        };
    }

    /// <summary>Reads a JSONL file (see the type remarks for the accepted line shapes).</summary>
    public static IReadOnlyList<TrainingExample> ReadJsonl(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, null, "file not found");
        var examples = new List<TrainingExample>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            examples.Add(ParseLine(line, new SourceLocation(path, lineNumber)));
        }
        if (examples.Count == 0) throw new DataFormatException(path, null, "file is empty (no examples)");
        return examples;
    }

    /// <summary>Reads a plain-text file: one document, or several split by <see cref="DocumentSeparator"/> lines.</summary>
    /// <remarks>Line breaks around a separator belong to neither document (they are trimmed), and documents
    /// that are empty after that are dropped. Each document's source line is the line it starts on.</remarks>
    public static IReadOnlyList<TrainingExample> ReadText(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, null, "file not found");
        var examples = new List<TrainingExample>();
        var current = new StringBuilder();
        int lineNumber = 0, startLine = 1;

        void Flush()
        {
            var text = current.ToString().Trim('\r', '\n');
            if (text.Length > 0) examples.Add(new TextExample(text, new SourceLocation(path, startLine)));
            current.Clear();
        }

        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            lineNumber++;
            if (line.Trim() == DocumentSeparator)
            {
                Flush();
                startLine = lineNumber + 1;
                continue;
            }
            if (current.Length == 0 && line.Length == 0) { startLine = lineNumber + 1; continue; }
            if (current.Length > 0) current.Append('\n');
            current.Append(line);
        }
        Flush();
        if (examples.Count == 0) throw new DataFormatException(path, null, "file is empty (no text)");
        return examples;
    }

    private static TrainingExample ParseLine(string line, SourceLocation at)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line); }
        catch (JsonException e) { throw Bad(at, $"invalid JSON: {e.Message}", e); }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad(at, $"expected a JSON object; got {Describe(root.ValueKind)}");

            bool hasText = root.TryGetProperty("text", out var text);
            bool hasPrompt = root.TryGetProperty("prompt", out var prompt);
            bool hasCompletion = root.TryGetProperty("completion", out var completion);
            bool hasMessages = root.TryGetProperty("messages", out var messages);
            int shapes = (hasText ? 1 : 0) + (hasPrompt && hasCompletion ? 1 : 0) + (hasMessages ? 1 : 0);

            if (shapes == 0)
            {
                var keys = string.Join(", ", root.EnumerateObject().Select(p => p.Name));
                throw Bad(at, $"expected an object with \"text\", \"prompt\"+\"completion\" or \"messages\"; got keys [{keys}]");
            }
            if (shapes > 1) throw Bad(at, "ambiguous example: use exactly one of \"text\", \"prompt\"+\"completion\" or \"messages\"");

            if (hasText) return new TextExample(RequireString(text, "text", at), at);
            if (hasMessages) return new ChatExample(ParseMessages(messages, at), at);
            return new PromptCompletionExample(RequireString(prompt, "prompt", at), RequireString(completion, "completion", at), at);
        }
    }

    private static ChatMessage[] ParseMessages(JsonElement messages, SourceLocation at)
    {
        if (messages.ValueKind != JsonValueKind.Array) throw Bad(at, $"\"messages\" must be an array; got {Describe(messages.ValueKind)}");
        var result = new List<ChatMessage>();
        int i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object ||
                !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String ||
                !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw Bad(at, $"messages[{i}]: expected {{\"role\": string, \"content\": string}}");
            result.Add(new ChatMessage(role.GetString()!, content.GetString()!));
            i++;
        }
        if (result.Count == 0) throw Bad(at, "\"messages\" is empty");
        return [.. result];
    }

    private static string RequireString(JsonElement value, string key, SourceLocation at) =>
        value.ValueKind == JsonValueKind.String ? value.GetString()! : throw Bad(at, $"\"{key}\" must be a string; got {Describe(value.ValueKind)}");

    private static string Describe(JsonValueKind kind) => kind.ToString().ToLowerInvariant();

    private static DataFormatException Bad(SourceLocation at, string problem, Exception? inner = null) =>
        new(at.FilePath, at.Line, problem, inner);
}
