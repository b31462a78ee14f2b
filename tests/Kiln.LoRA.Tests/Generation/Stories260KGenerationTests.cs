using Kiln.LoRA.Generation;
using Kiln.LoRA.Models;
using Kiln.LoRA.Tests.Models;

namespace Kiln.LoRA.Tests.Generation;

/// <summary>The real stories260K model reproduces llama2.c run.c's recorded generations token for token.</summary>
public class Stories260KGenerationTests
{
    private static readonly Lazy<PretrainedModel> Model = new(() => Pretrained.Load(TestData.File("models", "stories260K", "stories260K.bin")));

    public static TheoryData<int> Cases => [0, 1, 2, 3, 4];

    [Theory]
    [MemberData(nameof(Cases))]
    public void RunCGenerationsAreReproducedExactly(int index)
    {
        var g = PretrainedTests.Json("models", "stories260K", "reference_logits.json").GetProperty("generations")[index];
        var p = Model.Value;
        var promptIds = p.RequireTokenizer().Encode(g.GetProperty("prompt").GetString()!, addSpecial: true);
        Assert.Equal(PretrainedTests.Ints(g.GetProperty("prompt_ids")), promptIds);
        int steps = g.GetProperty("steps").GetInt32();
        var o = new SamplingOptions
        {
            Temperature = g.GetProperty("temperature").GetDouble(),
            TopP = g.GetProperty("topp").GetDouble(),
            Seed = g.GetProperty("seed").GetUInt64(),
            MaxTokens = steps + 1 - promptIds.Length,   // run.c's steps count positions, prompt included
            StopTokens = [1],                            // run.c stops when the model emits BOS
        };
        var ids = promptIds.Concat(new Generator(p.Model, p.RequireTokenizer()).GenerateIds(promptIds, o)).ToArray();
        Assert.Equal(PretrainedTests.Ints(g.GetProperty("ids")), ids);
        Assert.Equal(g.GetProperty("text").GetString(), p.RequireTokenizer().Decode(ids));
    }

    [Fact]
    public void HuggingFaceConversionGreedyMatchesTransformers()
    {
        var r = PretrainedTests.Json("hf", "stories260K", "reference.json");
        var m = Pretrained.Load(TestData.File("hf", "stories260K", "model")).Model;
        var expected = PretrainedTests.Ints(r.GetProperty("greedy_200"));
        var ids = new Generator(m, new LetterTokenizer()).GenerateIds([1], new SamplingOptions { MaxTokens = expected.Length - 1, StopTokens = [] });
        Assert.Equal(expected, (int[])[1, .. ids]);
    }
}
