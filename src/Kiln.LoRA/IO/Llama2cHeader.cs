namespace Kiln.LoRA.IO;

/// <summary>
/// The 7-int32 header of a llama2.c legacy ("v0") checkpoint, validated. <see cref="VocabSize"/> is always
/// positive; the file's sign of it becomes <see cref="SharedClassifier"/>.
/// </summary>
/// <param name="Dim">Model width (HF hidden_size).</param>
/// <param name="HiddenDim">FFN width (HF intermediate_size).</param>
/// <param name="Layers">Transformer blocks.</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads (fewer than <paramref name="Heads"/> for grouped-query attention).</param>
/// <param name="VocabSize">Vocabulary size.</param>
/// <param name="SeqLen">Maximum sequence length (the length of the stored RoPE tables).</param>
/// <param name="SharedClassifier">True when the output classifier is the token embedding (no wcls array).</param>
public sealed record Llama2cHeader(int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int VocabSize, int SeqLen, bool SharedClassifier)
{
    /// <summary>Bytes of the header: 7 int32.</summary>
    public const int Bytes = 28;

    /// <summary>Width of one attention head.</summary>
    public int HeadSize => Dim / Heads;

    /// <summary>Total key/value width.</summary>
    public int KvDim => KvHeads * HeadSize;

    /// <summary>The exact file size this header implies, in bytes.</summary>
    public long FileBytes
    {
        get
        {
            long d = Dim, h = HiddenDim, l = Layers, v = VocabSize, kv = KvDim;
            long floats = checked(
                v * d                                 // token embedding
                + l * d                               // rms_att
                + l * d * d + 2 * l * kv * d + l * d * d  // wq, wk, wv, wo
                + l * d                               // rms_ffn
                + 3 * l * h * d                       // w1, w2, w3
                + d                                   // rms_final
                + 2 * (long)SeqLen * (HeadSize / 2)   // freq_cis real and imag (legacy, skipped)
                + (SharedClassifier ? 0 : v * d));    // wcls
            return checked(Bytes + 4 * floats);
        }
    }

    /// <summary>Validates raw header values read from <paramref name="file"/> (named in errors).</summary>
    internal static Llama2cHeader FromRaw(string file, int[] raw)
    {
        string[] names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
        string values = string.Join(", ", names.Select((n, i) => $"{n}={raw[i]}"));
        InvalidDataException Bad(string why) => new($"llama2.c checkpoint '{file}': {why} (header: {values})");

        for (int i = 0; i < 7; i++)
            if (i != 5 && raw[i] <= 0) throw Bad($"{names[i]} must be positive, is {raw[i]}");
        // vocab_size's sign is a flag, so only 0 (and int.MinValue, which has no positive counterpart) are invalid.
        if (raw[5] is 0 or int.MinValue) throw Bad($"vocab_size {raw[5]} is invalid");
        var h = new Llama2cHeader(raw[0], raw[1], raw[2], raw[3], raw[4], Math.Abs(raw[5]), raw[6], raw[5] > 0);
        if (h.Dim % h.Heads != 0) throw Bad($"dim {h.Dim} is not a multiple of n_heads {h.Heads}");
        if (h.KvHeads > h.Heads || h.Heads % h.KvHeads != 0) throw Bad($"n_heads {h.Heads} is not a multiple of n_kv_heads {h.KvHeads}");
        if (h.HeadSize % 2 != 0) throw Bad($"head size {h.HeadSize} is odd; RoPE rotates pairs");
        try { _ = h.FileBytes; }
        catch (OverflowException) { throw Bad("the sizes it implies overflow"); }
        return h;
    }
}
