namespace Kiln.LoRA.Modules;

/// <summary>Token embedding: rows of a (vocab, dim) table picked by integer ids.</summary>
public sealed class Embedding : Module
{
    public Embedding(Tensor weight)
    {
        if (weight.Rank != 2) throw new ArgumentException($"Embedding: weight must be (vocab, dim), got shape [{string.Join(", ", weight.Shape)}]");
        Weight = Register("weight", new Parameter(weight));
    }

    public Parameter Weight { get; }
    public int VocabSize => Weight.Shape[0];
    public int Dim => Weight.Shape[1];

    public Tensor Forward(Tensor ids) => Ops.Embedding(Weight.Value, ids);
}
