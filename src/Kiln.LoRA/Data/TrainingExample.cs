using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Data;

/// <summary>Where an example came from, kept so that problems found after parsing (a chat example with no
/// template, a template that is not prefix-stable) can still name the file and line.</summary>
public readonly record struct SourceLocation(string FilePath, int Line);

/// <summary>One untokenized training example, as read from a data file.</summary>
public abstract record TrainingExample(SourceLocation Source);

/// <summary>Plain text: every token is trained (<c>{"text": ...}</c> or one document of a .txt file).</summary>
public sealed record TextExample(string Text, SourceLocation Source) : TrainingExample(Source);

/// <summary>Prompt and completion: only the completion is trained unless the prompt is requested too.</summary>
public sealed record PromptCompletionExample(string Prompt, string Completion, SourceLocation Source) : TrainingExample(Source);

/// <summary>A conversation rendered by an <see cref="IChatTemplate"/>; only assistant turns are trained.</summary>
public sealed record ChatExample(IReadOnlyList<ChatMessage> Messages, SourceLocation Source) : TrainingExample(Source);

/// <summary>A tokenized example: ids and, per id, whether it is a loss target (predicted from the ids before it).</summary>
/// <remarks>Position 0 is never a target: a document's first token has no context inside the document, and
/// with packing it would otherwise be "predicted" from the previous, unrelated document.</remarks>
public sealed record TokenizedExample(int[] Ids, bool[] Trained)
{
    /// <summary>Number of ids that are loss targets.</summary>
    public int TrainedCount => Trained.Count(t => t);
}
