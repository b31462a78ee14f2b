namespace Kiln.LoRA.Data;

/// <summary>A training-data file that cannot be read: missing, empty, or a line that is not a valid example.
/// The message always starts with the file (and, for a bad line, the 1-based line number) so a user can jump
/// straight to the problem, e.g. <c>data.jsonl line 7: expected an object with ...</c>.</summary>
public sealed class DataFormatException : Exception
{
    /// <summary>The file as the caller named it.</summary>
    public string FilePath { get; }

    /// <summary>1-based line number of the offending line, or null when the problem is the whole file.</summary>
    public int? Line { get; }

    /// <summary>What is wrong, without the file/line prefix.</summary>
    public string Problem { get; }

    public DataFormatException(string filePath, int? line, string problem, Exception? inner = null)
        : base(line is { } l ? $"{filePath} line {l}: {problem}" : $"{filePath}: {problem}", inner)
    {
        FilePath = filePath;
        Line = line;
        Problem = problem;
    }
}
