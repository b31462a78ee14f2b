namespace Kiln.LoRA.Modules;

/// <summary>x / sqrt(mean(x²) + eps) · weight over the last axis (Llama, Qwen2).</summary>
public sealed class RmsNorm : Module
{
    public RmsNorm(Tensor weight, double eps)
    {
        if (weight.Rank != 1) throw new ArgumentException($"RmsNorm: weight must be 1-D, got shape [{string.Join(", ", weight.Shape)}]");
        Weight = Register("weight", new Parameter(weight));
        Eps = eps;
    }

    public Parameter Weight { get; }
    public double Eps { get; }

    public Tensor Forward(Tensor x) => Ops.RmsNorm(x, Weight.Value, Eps);
}
