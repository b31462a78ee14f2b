using Kiln.LoRA.IO;

namespace Kiln.LoRA.Tests.IO;

public class AtomicFileTests
{
    [Fact]
    public void FailingTensorEnumerationLeavesTheExistingFileUntouchedAndNoTempFile()
    {
        using var dir = TestData.Temp();
        string path = dir.File("model.safetensors");
        Safetensors.Save(path, [new("old", Tensor.FromArray(new[] { 1f, 2f }))]);
        byte[] before = File.ReadAllBytes(path);

        static IEnumerable<KeyValuePair<string, Tensor>> Failing()
        {
            yield return new("a", Tensor.FromArray(new[] { 3f }));
            throw new InvalidOperationException("enumeration failed midway");
        }
        Assert.Throws<InvalidOperationException>(() => Safetensors.Save(path, Failing()));

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void FailureWhileWritingDataLeavesNothingBehind()
    {
        using var dir = TestData.Temp();
        string path = dir.File("new.safetensors");
        var disposed = Tensor.FromArray(new[] { 1f });
        disposed.Dispose();   // writing it fails after the header is already in the temp file
        Assert.ThrowsAny<Exception>(() => Safetensors.Save(path, [new("a", Tensor.FromArray(new[] { 2f })), new("b", disposed)]));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void WriteReplacesAnExistingFile()
    {
        using var dir = TestData.Temp();
        string path = dir.File("a.txt");
        AtomicFile.WriteAllText(path, "first, longer content");
        AtomicFile.WriteAllText(path, "second ✓");
        Assert.Equal("second ✓", File.ReadAllText(path));
        Assert.Equal(0xE2, File.ReadAllBytes(path)[7]);   // UTF-8 without a byte-order mark
        Assert.Single(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void ExceptionFromTheWriterPropagatesAndKeepsTheOldContent()
    {
        using var dir = TestData.Temp();
        string path = dir.File("b.bin");
        AtomicFile.WriteAllBytes(path, [1, 2, 3]);
        Assert.Throws<IOException>(() => AtomicFile.Write(path, s => { s.Write([9, 9, 9, 9]); throw new IOException("disk full"); }));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
        Assert.Single(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void MissingDirectoryIsReportedByName()
    {
        using var dir = TestData.Temp();
        var e = Assert.Throws<DirectoryNotFoundException>(() => AtomicFile.WriteAllText(Path.Combine(dir.Path, "nope", "x.txt"), "x"));
        Assert.Contains("nope", e.Message);
    }
}
