namespace Kiln.LoRA.Models;

/// <summary>
/// Keys and values of every layer for the tokens seen so far, (B, kv_heads, S, head_dim) each. A forward
/// call appends lazily; the generator evaluates the new entries together with the logits and then
/// <see cref="Commit"/>s them, so the cache holds realised leaves and the next step's graph starts there.
/// </summary>
public sealed class KvCache
{
    private readonly Tensor?[] _keys, _values;

    public KvCache(int layers)
    {
        _keys = new Tensor?[layers];
        _values = new Tensor?[layers];
    }

    /// <summary>Number of positions held (0 when empty).</summary>
    public int Length => _keys[0]?.Shape[2] ?? 0;

    internal (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        if (_keys[layer] is { } oldK)
        {
            k = Ops.Concat([oldK, k], axis: 2);
            v = Ops.Concat([_values[layer]!, v], axis: 2);
        }
        _keys[layer] = k;
        _values[layer] = v;
        return (k, v);
    }

    /// <summary>The lazy entries a step added; evaluate them with the logits, then call <see cref="Commit"/>.</summary>
    public IEnumerable<Tensor> Pending => _keys.Concat(_values).Where(t => t is not null && !t.IsRealised).Select(t => t!);

    /// <summary>Replaces every entry by a detached leaf (its graph history is dropped).</summary>
    public void Commit()
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            if (_keys[i] is { } k) _keys[i] = k.Detach();
            if (_values[i] is { } v) _values[i] = v.Detach();
        }
    }
}
