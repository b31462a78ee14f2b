namespace Kiln.LoRA.Modules;

/// <summary>y = x·Wᵀ + b with W stored (out, in) as in PyTorch and Hugging Face files.</summary>
public class Linear : Module
{
    public Linear(Tensor weight, Tensor? bias = null)
    {
        if (weight.Rank != 2) throw new ArgumentException($"Linear: weight must be (out, in), got shape [{string.Join(", ", weight.Shape)}]");
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != weight.Shape[0]))
            throw new ArgumentException($"Linear: bias shape [{string.Join(", ", bias.Shape)}] does not match weight (out = {weight.Shape[0]})");
        Weight = Register("weight", new Parameter(weight));
        if (bias is not null) Bias = Register("bias", new Parameter(bias));
    }

    public Parameter Weight { get; }
    public Parameter? Bias { get; }
    public int InFeatures => Weight.Shape[1];
    public int OutFeatures => Weight.Shape[0];

    public virtual Tensor Forward(Tensor x)
    {
        if (x.Shape[^1] != InFeatures)
            throw new ArgumentException($"Linear({InFeatures}→{OutFeatures}): input has {x.Shape[^1]} features (shape [{string.Join(", ", x.Shape)}])");
        var y = x.MatMul(Weight.Value.T);
        return Bias is null ? y : y + Bias.Value;
    }
}
