// A LoraLinear layer in training mode applies dropout to its branch input: that forward, written by the module,
// still becomes one lora_linear op (the branch input as its own operand), with the values of the graph as built.
using Kiln.Graph;
using Kiln.LoRA.Modules;
using Kiln.Passes;
using Kiln.Runtime;

namespace Kiln.LoRA.Tests.Models;

public class LoraDropoutFusionTests
{
    [Fact]
    public void ATrainingModeForwardWithDropoutIsOneLoraOpWithTheUnfusedValues()
    {
        var layer = new LoraLinear(new Linear(Tensor.RandomNormal([48, 64], 1, std: 0.1)), new LoraOptions(Rank: 8, Alpha: 16, Dropout: 0.25), seed: 3);
        layer.B.Value = Tensor.RandomNormal([48, 8], 4, std: 0.1).Eval();   // B starts at zero; make the branch count
        layer.SetTraining(true);
        var x = Tensor.RandomNormal([2, 16, 64], 5);

        var y = layer.Forward(x);
        var fused = GraphOptimizer.Optimize([y.Node]).Outputs[0];
        Assert.Equal("lora_linear", fused.Op.Name);
        Assert.True(((LoraAttrs)fused.Attrs!).HasBranch);

        var twin = layer.Forward(x);   // the same mask: seed and salt unchanged
        Evaluator.Evaluate([twin.Node], optimize: false);
        var (got, expected) = (y.ToArray<float>(), twin.ToArray<float>());
        for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(got[i] - expected[i]) <= 1e-5 * (1 + Math.Abs(expected[i])), $"[{i}] {got[i]} vs {expected[i]}");

        layer.SetTraining(false);   // no dropout: a different result (the mask did something)
        Assert.NotEqual(expected, layer.Forward(x).ToArray<float>());
    }
}
