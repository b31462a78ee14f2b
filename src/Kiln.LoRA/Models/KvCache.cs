namespace Kiln.LoRA.Models;

/// <summary>
/// Keys and values of every layer for the tokens seen so far, (B, kv_heads, S, head_dim) each. A forward call
/// appends lazily; the generator evaluates the new entries with the logits and then <see cref="Commit"/>s them.
/// By default the cache has spare capacity (grown by doubling): a step writes its keys into the next free
/// slots and tells attention how many are valid, both as data, so every decode step runs the same graph and
/// reuses one cached plan. With a padding mask (left-padded batches) the cache grows by concatenation instead.
/// </summary>
public sealed class KvCache
{
    private readonly Tensor?[] _keys, _values;
    private readonly Tensor?[] _pendingK, _pendingV;
    private int _pendingT;
    private Tensor? _writeAt, _valid;

    public KvCache(int layers, bool fixedCapacity = true)
    {
        _keys = new Tensor?[layers]; _values = new Tensor?[layers];
        _pendingK = new Tensor?[layers]; _pendingV = new Tensor?[layers];
        FixedCapacity = fixedCapacity;
    }

    /// <summary>Slots with spare capacity (plan reuse) rather than growth by concatenation.</summary>
    public bool FixedCapacity { get; }

    /// <summary>Number of positions held (committed).</summary>
    public int Length { get; private set; }

    /// <summary>Slots allocated per layer (≥ Length).</summary>
    public int Capacity => _keys[0]?.Shape[2] ?? 0;

    /// <summary>Called once per forward before the layers: makes room for <paramref name="t"/> new positions.</summary>
    internal void Begin(int t, int batch, int kvHeads, int headDim, Device device, DType dtype = DType.Float32)
    {
        _pendingT = t;
        if (!FixedCapacity) return;
        int need = Length + t;
        if (need > Capacity)
        {
            int cap = Math.Max(64, Capacity);
            while (cap < need) cap *= 2;
            for (int l = 0; l < _keys.Length; l++)
            {
                _keys[l] = Grow(_keys[l], batch, kvHeads, cap, headDim, device, dtype);
                _values[l] = Grow(_values[l], batch, kvHeads, cap, headDim, device, dtype);
            }
        }
        _writeAt = Tensor.FromArray(Enumerable.Range(Length, t).Select(i => (long)i).ToArray(), [t], device);
        _valid = Tensor.FromArray(new[] { Length + t }, [], device);
    }

    /// <summary>A zeroed cache of <paramref name="cap"/> slots in the model's dtype, the old entries copied in (through
    /// fp32 on the host, exact for bf16/fp16).</summary>
    private static Tensor Grow(Tensor? old, int b, int h, int cap, int d, Device device, DType dtype)
    {
        var fresh = new float[(long)b * h * cap * d];
        if (old is not null)
        {
            var o = old.ToArray<float>();
            int oldCap = old.Shape[2];
            for (int i = 0; i < b * h; i++) Array.Copy(o, (long)i * oldCap * d, fresh, (long)i * cap * d, (long)oldCap * d);
        }
        var grown = Tensor.FromArray(fresh, [b, h, cap, d], device);
        return dtype == DType.Float32 ? grown : grown.Cast(dtype).Detach();
    }

    /// <summary>The layer's keys and values including the new ones, and the valid count (null: all are valid).</summary>
    internal (Tensor K, Tensor V, Tensor? Valid) Append(int layer, Tensor k, Tensor v)
    {
        if (FixedCapacity)
        {
            // Slots past Length are zero, so adding writes the new rows.
            _pendingK[layer] = Ops.IndexAdd(_keys[layer]!, 2, _writeAt!, k);
            _pendingV[layer] = Ops.IndexAdd(_values[layer]!, 2, _writeAt!, v);
            return (_pendingK[layer]!, _pendingV[layer]!, _valid);
        }
        if (_keys[layer] is { } oldK)
        {
            k = Ops.Concat([oldK, k], axis: 2);
            v = Ops.Concat([_values[layer]!, v], axis: 2);
        }
        _pendingK[layer] = k; _pendingV[layer] = v;
        return (k, v, null);
    }

    /// <summary>The lazy entries a step added; evaluate them with the logits, then call <see cref="Commit"/>.</summary>
    public IEnumerable<Tensor> Pending => _pendingK.Concat(_pendingV).Where(t => t is not null).Select(t => t!);

    /// <summary>Makes the pending entries the cache (as detached leaves) and advances <see cref="Length"/>.</summary>
    public void Commit()
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            if (_pendingK[i] is { } k) _keys[i] = k.Detach();
            if (_pendingV[i] is { } v) _values[i] = v.Detach();
            _pendingK[i] = _pendingV[i] = null;
        }
        Length += _pendingT;
        _pendingT = 0;
    }
}
