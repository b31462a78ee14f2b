using Kiln.LoRA.Data;
using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Tests.Data;

public class ExampleTokenizerTests
{
    private static readonly SourceLocation At = new("chat.jsonl", 4);
    private static readonly ByteTokenizer Tok = new();

    /// <summary>Expected result built from text pieces: BOS, the bytes of each piece with its flag, EOS with
    /// the given flag; position 0 is never trained.</summary>
    private static (int[] Ids, bool[] Trained) Expect(bool eosTrained, params (string Text, bool Trained)[] pieces)
    {
        var ids = new List<int> { 1 };
        var trained = new List<bool> { false };
        foreach (var (text, t) in pieces)
            foreach (var id in ByteTokenizer.Bytes(text)) { ids.Add(id); trained.Add(t); }
        ids.Add(2);
        trained.Add(eosTrained);
        return ([.. ids], [.. trained]);
    }

    private static void AssertTokens((int[] Ids, bool[] Trained) expected, TokenizedExample actual)
    {
        Assert.Equal(expected.Ids, actual.Ids);
        Assert.Equal(expected.Trained, actual.Trained);
    }

    [Fact]
    public void TextTrainsEverythingButTheFirstToken()
    {
        var t = new ExampleTokenizer(Tok).Tokenize(new TextExample("ab", At));
        Assert.Equal([1, 'a' + 3, 'b' + 3, 2], t.Ids);
        Assert.Equal([false, true, true, true], t.Trained);
        Assert.Equal(3, t.TrainedCount);
    }

    [Fact]
    public void PromptIsMaskedUnlessTrainOnPrompt()
    {
        var example = new PromptCompletionExample("Q:", "A", At);
        AssertTokens(Expect(true, ("Q:", false), ("A", true)), new ExampleTokenizer(Tok).Tokenize(example));
        AssertTokens(Expect(true, ("Q:", true), ("A", true)), new ExampleTokenizer(Tok, trainOnPrompt: true).Tokenize(example));
    }

    [Fact]
    public void OnlyAssistantTurnsAreTrainedIncludingTheirClosingMarker()
    {
        ChatMessage[] messages = [new("system", "s"), new("user", "hi"), new("assistant", "yo"), new("user", "q"), new("assistant", "ok")];
        var t = new ExampleTokenizer(Tok, new TinyChatTemplate()).Tokenize(new ChatExample(messages, At));
        // Rendered: "[s]s|[u]hi|[a]yo|[u]q|[a]ok|": assistant headers "[a]" untrained, "yo|" and "ok|" trained.
        AssertTokens(Expect(true, ("[s]s|[u]hi|[a]", false), ("yo|", true), ("[u]q|[a]", false), ("ok|", true)), t);
    }

    [Fact]
    public void ConversationEndingWithUserDoesNotTrainEos()
    {
        ChatMessage[] messages = [new("user", "hi"), new("assistant", "yo"), new("user", "bye")];
        var t = new ExampleTokenizer(Tok, new TinyChatTemplate()).Tokenize(new ChatExample(messages, At));
        AssertTokens(Expect(false, ("[u]hi|[a]", false), ("yo|", true), ("[u]bye|", false)), t);
    }

    [Fact]
    public void TemplateThatWritesBosTextGetsNoSecondBos()
    {
        ChatMessage[] messages = [new("user", "x"), new("assistant", "y")];
        var t = new ExampleTokenizer(Tok, new TinyChatTemplate(preamble: "<s>")).Tokenize(new ChatExample(messages, At));
        int[] expected = [.. ByteTokenizer.Bytes("<s>[u]x|[a]y|"), 2];
        Assert.Equal(expected, t.Ids);
        Assert.Equal(Enumerable.Range(0, expected.Length).Select(i => i >= "<s>[u]x|[a]".Length), t.Trained);
    }

    [Fact]
    public void MessagesWithoutTemplateNameTheFileAndLine()
    {
        var e = Assert.Throws<DataFormatException>(() =>
            new ExampleTokenizer(Tok).Tokenize(new ChatExample([new("user", "x")], At)));
        Assert.StartsWith("chat.jsonl line 4: \"messages\" examples need a chat template", e.Message);
    }

    [Fact]
    public void TemplateThatIsNotPrefixStableIsRejected()
    {
        var e = Assert.Throws<DataFormatException>(() =>
            new ExampleTokenizer(Tok, new CountingChatTemplate()).Tokenize(new ChatExample([new("user", "x"), new("assistant", "y")], At)));
        Assert.StartsWith("chat.jsonl line 4: the chat template's rendering of messages[..2] does not extend", e.Message);
    }

    [Fact]
    public void TokenizeFileReadsAndTokenizesInOrder()
    {
        using var dir = TestData.Temp();
        var path = dir.File("d.jsonl");
        File.WriteAllText(path, "{\"text\": \"a\"}\n{\"prompt\": \"b\", \"completion\": \"c\"}\n");
        var all = new ExampleTokenizer(Tok).TokenizeFile(path);
        Assert.Equal(2, all.Length);
        AssertTokens(Expect(true, ("a", true)), all[0]);
        AssertTokens(Expect(true, ("b", false), ("c", true)), all[1]);
    }
}
