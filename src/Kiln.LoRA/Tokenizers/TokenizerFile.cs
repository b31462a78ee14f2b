using System.IO.Compression;

namespace Kiln.LoRA.Tokenizers;

/// <summary>Reads tokenizer files, transparently un-gzipping "*.gz" ones (the big tokenizer.json files are
/// stored compressed), and turns I/O problems into exceptions that name the file.</summary>
internal static class TokenizerFile
{
    public static byte[] ReadAllBytes(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"tokenizer file not found: {path}", path);
        if (!path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
            return File.ReadAllBytes(path);
        try
        {
            using var file = File.OpenRead(path);
            using var gzip = new GZipStream(file, CompressionMode.Decompress);
            using var buffer = new MemoryStream();
            gzip.CopyTo(buffer);
            return buffer.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{Path.GetFileName(path)}: not a valid gzip file ({e.Message})", e);
        }
    }

    /// <summary>The path itself when it exists, else the same path with ".gz" appended when that exists, else null.</summary>
    public static string? PlainOrGzip(string path) =>
        File.Exists(path) ? path : File.Exists(path + ".gz") ? path + ".gz" : null;
}
