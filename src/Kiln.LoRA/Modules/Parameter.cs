namespace Kiln.LoRA.Modules;

/// <summary>
/// A named weight of a module. The tensor is replaced (not mutated) by updates: optimizers, adapter loading
/// and merging assign a new realised leaf, so graphs built earlier keep the value they were built with.
/// </summary>
public sealed class Parameter(Tensor value, bool trainable = false)
{
    public Tensor Value { get; set; } = value;

    /// <summary>Whether training computes a gradient for it and the optimizer updates it.</summary>
    public bool Trainable { get; set; } = trainable;

    public IReadOnlyList<int> Shape => Value.Shape;

    public override string ToString() => $"Parameter{Value}{(Trainable ? " trainable" : "")}";
}
