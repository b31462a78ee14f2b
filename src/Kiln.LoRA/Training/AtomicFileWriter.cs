namespace Kiln.LoRA.Training;

/// <summary>Writes a file so that readers see either the old or the new content, never a half-written one:
/// the text goes to a temp file in the same folder (same volume, so the move is a rename) which then replaces
/// the target. Private stand-in until a shared <c>Kiln.LoRA.IO.AtomicFile</c> exists.</summary>
internal static class AtomicFileWriter
{
    public static void WriteAllText(string path, string contents)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllText(temp, contents);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
