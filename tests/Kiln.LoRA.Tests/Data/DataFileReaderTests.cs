using Kiln.LoRA.Data;
using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Tests.Data;

public class DataFileReaderTests
{
    private static DataFormatException ReadBad(string fileName, string contents, out string path, TestData.TempDir dir)
    {
        path = dir.File(fileName);
        File.WriteAllText(path, contents);
        var p = path;
        return Assert.Throws<DataFormatException>(() => DataFileReader.Read(p));
    }

    [Fact]
    public void JsonlReadsAllThreeShapesSkippingBlankLinesWithLineNumbers()
    {
        using var dir = TestData.Temp();
        var path = dir.File("data.jsonl");
        File.WriteAllText(path, """
            {"text": "hello", "id": 7}

            {"prompt": "p", "completion": "c"}
               
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
            """);
        var examples = DataFileReader.Read(path);
        Assert.Equal(3, examples.Count);
        var text = Assert.IsType<TextExample>(examples[0]);
        Assert.Equal("hello", text.Text);
        Assert.Equal(new SourceLocation(path, 1), text.Source);
        var pc = Assert.IsType<PromptCompletionExample>(examples[1]);
        Assert.Equal(("p", "c", 3), (pc.Prompt, pc.Completion, pc.Source.Line));
        var chat = Assert.IsType<ChatExample>(examples[2]);
        Assert.Equal([new ChatMessage("user", "hi"), new ChatMessage("assistant", "yo")], chat.Messages);
        Assert.Equal(5, chat.Source.Line);
    }

    private const string SixGoodLines = "{\"text\": \"a\"}\n{\"text\": \"b\"}\n\n{\"text\": \"c\"}\n{\"text\": \"d\"}\n{\"text\": \"e\"}\n";

    [Fact]
    public void UnknownKeysNameFileLineAndKeys()
    {
        using var dir = TestData.Temp();
        var e = ReadBad("data.jsonl", SixGoodLines + "{\"foo\": 1}\n", out var path, dir);
        Assert.Equal($"{path} line 7: expected an object with \"text\", \"prompt\"+\"completion\" or \"messages\"; got keys [foo]", e.Message);
        Assert.Equal((path, 7), (e.FilePath, e.Line!.Value));
    }

    [Fact]
    public void PromptWithoutCompletionIsRejectedListingKeys()
    {
        using var dir = TestData.Temp();
        var e = ReadBad("d.jsonl", "{\"prompt\": \"x\", \"meta\": 2}\n", out var path, dir);
        Assert.Equal($"{path} line 1: expected an object with \"text\", \"prompt\"+\"completion\" or \"messages\"; got keys [prompt, meta]", e.Message);
    }

    [Fact]
    public void InvalidJsonCarriesParserMessageAndLine()
    {
        using var dir = TestData.Temp();
        var e = ReadBad("d.jsonl", "{\"text\": \"a\"}\n\n{\"text\": \"b\",\n", out var path, dir);
        Assert.StartsWith($"{path} line 3: invalid JSON: ", e.Message);
        Assert.IsAssignableFrom<System.Text.Json.JsonException>(e.InnerException);
        Assert.Contains(e.InnerException!.Message, e.Message);
    }

    [Theory]
    [InlineData("[1, 2]", "expected a JSON object; got array")]
    [InlineData("{\"text\": 5}", "\"text\" must be a string; got number")]
    [InlineData("{\"prompt\": \"a\", \"completion\": null}", "\"completion\" must be a string; got null")]
    [InlineData("{\"text\": \"a\", \"messages\": []}", "ambiguous example: use exactly one of \"text\", \"prompt\"+\"completion\" or \"messages\"")]
    [InlineData("{\"messages\": {}}", "\"messages\" must be an array; got object")]
    [InlineData("{\"messages\": []}", "\"messages\" is empty")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"user\"}]}", "messages[1]: expected {\"role\": string, \"content\": string}")]
    public void BadLineShapesAreRejectedOnTheirLine(string line, string problem)
    {
        using var dir = TestData.Temp();
        var e = ReadBad("d.jsonl", "{\"text\": \"ok\"}\n" + line + "\n", out var path, dir);
        Assert.Equal($"{path} line 2: {problem}", e.Message);
        Assert.Equal(problem, e.Problem);
    }

    [Theory]
    [InlineData("d.jsonl", "", "file is empty (no examples)")]
    [InlineData("d.jsonl", "\n  \n\n", "file is empty (no examples)")]
    [InlineData("d.txt", "", "file is empty (no text)")]
    [InlineData("d.txt", "\n<|endoftext|>\n\n", "file is empty (no text)")]
    [InlineData("d.csv", "a,b", "unsupported extension '.csv'; expected .jsonl or .txt")]
    public void EmptyOrUnsupportedFilesAreRejected(string name, string contents, string problem)
    {
        using var dir = TestData.Temp();
        var e = ReadBad(name, contents, out var path, dir);
        Assert.Equal($"{path}: {problem}", e.Message);
        Assert.Null(e.Line);
    }

    [Fact]
    public void MissingFileIsADataFormatException()
    {
        using var dir = TestData.Temp();
        var path = dir.File("nope.jsonl");
        var e = Assert.Throws<DataFormatException>(() => DataFileReader.Read(path));
        Assert.Equal($"{path}: file not found", e.Message);
    }

    [Fact]
    public void TextFileWithoutSeparatorsIsOneDocument()
    {
        using var dir = TestData.Temp();
        var path = dir.File("story.txt");
        File.WriteAllText(path, "Once upon a time.\n\nThe end.\n");
        var doc = Assert.IsType<TextExample>(Assert.Single(DataFileReader.Read(path)));
        Assert.Equal("Once upon a time.\n\nThe end.", doc.Text);
    }

    [Fact]
    public void EndOfTextLinesSplitDocuments()
    {
        using var dir = TestData.Temp();
        var path = dir.File("stories.txt");
        File.WriteAllText(path, "A one.\nA two.\n<|endoftext|>\n\nB one.\n<|endoftext|>\n<|endoftext|>\nC.\n");
        var docs = DataFileReader.Read(path).Cast<TextExample>().ToList();
        Assert.Equal(["A one.\nA two.", "B one.", "C."], docs.Select(d => d.Text));
        Assert.Equal([1, 5, 8], docs.Select(d => d.Source.Line));
    }

    [Fact]
    public void RealTinyStoriesSampleSplitsIntoItsFiveStories()
    {
        var path = TestData.File("corpus", "tinystories", "tinystories_sample.txt");
        var raw = File.ReadAllText(path);
        var docs = DataFileReader.Read(path).Cast<TextExample>().ToList();
        Assert.Equal(5, docs.Count);
        Assert.All(docs, d => Assert.DoesNotContain("<|endoftext|>", d.Text));
        Assert.Equal(raw.Split("<|endoftext|>").Select(s => s.Trim('\n')).Where(s => s.Length > 0), docs.Select(d => d.Text));
    }
}
