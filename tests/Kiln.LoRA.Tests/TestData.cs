namespace Kiln.LoRA.Tests;

/// <summary>Locates the repository's data/ folder (real models, tokenizers and reference values shipped
/// with the repo, see data/SOURCES.md) from the test binary, whatever the working directory.</summary>
internal static class TestData
{
    private static readonly Lazy<string> RootDir = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (System.IO.File.Exists(Path.Combine(dir.FullName, "Kiln.slnx")) && Directory.Exists(Path.Combine(dir.FullName, "data")))
                return Path.Combine(dir.FullName, "data");
        throw new DirectoryNotFoundException($"no data/ folder above {AppContext.BaseDirectory} (tests expect to run inside the repository)");
    });

    public static string Root => RootDir.Value;

    public static string File(params string[] parts) => Path.Combine([Root, .. parts]);

    /// <summary>A fresh empty temp directory, deleted when the returned handle is disposed.</summary>
    public static TempDir Temp() => new();

    internal sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("kiln-test-").FullName;
        public string File(params string[] names) => System.IO.Path.Combine([Path, .. names]);
        public void Dispose() { try { Directory.Delete(Path, recursive: true); } catch (IOException) { } }
    }
}
