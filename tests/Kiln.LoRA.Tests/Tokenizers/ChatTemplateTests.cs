using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Tests.Tokenizers;

public class ChatTemplateTests
{
    private static readonly ChatMessage[] SystemUserAssistant =
    [
        new("system", "Be brief."),
        new("user", "Hi there"),
        new("assistant", "Hello!"),
    ];

    [Fact]
    public void Llama3RendersHeadersAndTrimsContent()
    {
        // From tokenizer_config.json's chat_template: bos + per turn header, "\n\n", content | trim, <|eot_id|>.
        string rendered = new Llama3ChatTemplate().Render([new("system", "Be brief."), new("user", "  Hi there\n")], addGenerationPrompt: true);
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n", rendered);
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
            new Llama3ChatTemplate().Render([new("user", "Hi")], addGenerationPrompt: false));
    }

    [Fact]
    public void ChatMLAddsQwen2sDefaultSystemTurnOnlyWhenNoneIsGiven()
    {
        var chatml = new ChatMLTemplate();
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            chatml.Render([new("user", "Hi")], addGenerationPrompt: true));
        Assert.Equal(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
            chatml.Render(SystemUserAssistant, addGenerationPrompt: false));
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n", new ChatMLTemplate(defaultSystemMessage: null).Render([new("user", "Hi")], false));
        Assert.Equal("", chatml.Render([], addGenerationPrompt: false));
    }

    [Fact]
    public void Llama3MarkersEncodeToSingleSpecialTokens()
    {
        var tok = BigTokenizers.Llama3.Value;
        int[] ids = tok.Encode(new Llama3ChatTemplate().Render(SystemUserAssistant, addGenerationPrompt: true));
        foreach (var marker in new[] { Llama3ChatTemplate.BeginOfText, Llama3ChatTemplate.StartHeader, Llama3ChatTemplate.EndHeader, Llama3ChatTemplate.EndOfTurn })
        {
            int id = Assert.IsType<int>(tok.TokenToId(marker));
            Assert.Equal([id], tok.Encode(marker));
            Assert.Contains(id, ids);
        }
        Assert.Equal(tok.BosId, ids[0]);
        Assert.Equal(4, ids.Count(i => i == tok.TokenToId(Llama3ChatTemplate.StartHeader)));
        Assert.Equal(3, ids.Count(i => i == tok.TokenToId(Llama3ChatTemplate.EndOfTurn)));
    }

    [Fact]
    public void ChatMLMarkersEncodeToSingleSpecialTokens()
    {
        var tok = BigTokenizers.Qwen3.Value;
        int[] ids = tok.Encode(new ChatMLTemplate().Render(SystemUserAssistant, addGenerationPrompt: true));
        int start = Assert.IsType<int>(tok.TokenToId(ChatMLTemplate.ImStart));
        int end = Assert.IsType<int>(tok.TokenToId(ChatMLTemplate.ImEnd));
        Assert.Equal([start], tok.Encode(ChatMLTemplate.ImStart));
        Assert.Equal([end], tok.Encode(ChatMLTemplate.ImEnd));
        Assert.Equal(4, ids.Count(i => i == start));
        Assert.Equal(3, ids.Count(i => i == end));
        Assert.Equal(start, ids[0]);
        Assert.Equal(tok.EosId, end);
    }

    [Fact]
    public void ForPicksByModelTypeAndTokenizer()
    {
        Assert.IsType<ChatMLTemplate>(ChatTemplates.For("qwen2"));
        Assert.IsType<Llama3ChatTemplate>(ChatTemplates.For("llama", BigTokenizers.Llama3.Value));
        Assert.Null(ChatTemplates.For("llama", Llama2cTokenizer.Load(TestData.File("models", "stories260K", "tok512.bin"))));
        Assert.Null(ChatTemplates.For("gpt2"));
    }
}
