// A reusable reference-keyed map Node → int for graph walks: open addressing over arrays kept per thread, so a
// walk allocates nothing and a lookup is a hash, a compare and an index (the plan-cache hit walks every node).
using Kiln.Graph;

namespace Kiln.Runtime;

internal sealed class NodeIds
{
    private Node?[] _keys = new Node?[256];
    private int[] _values = new int[256];
    private int _count;

    [ThreadStatic] private static NodeIds? _shared;

    /// <summary>This thread's map, cleared. Not reentrant: one walk at a time per thread.</summary>
    public static NodeIds Rent()
    {
        var m = _shared ??= new NodeIds();
        m.Clear();
        return m;
    }

    public int Count => _count;

    public void Clear()
    {
        if (_count == 0) return;
        Array.Clear(_keys);
        _count = 0;
    }

    public bool TryGet(Node key, out int value)
    {
        int mask = _keys.Length - 1;
        for (int i = Hash(key) & mask; ; i = (i + 1) & mask)
        {
            var k = _keys[i];
            if (k is null) { value = 0; return false; }
            if (ReferenceEquals(k, key)) { value = _values[i]; return true; }
        }
    }

    public bool Contains(Node key) => TryGet(key, out _);

    /// <summary>From the node's sequential id (Fibonacci hashing): unlike RuntimeHelpers.GetHashCode, a fresh node's
    /// first lookup does not have to install a hash code in the object header.</summary>
    private static int Hash(Node key) => (int)((ulong)key.Id * 0x9E3779B97F4A7C15UL >> 33);

    public int this[Node key]
    {
        get => TryGet(key, out int v) ? v : throw new KeyNotFoundException($"internal: {key} was not visited");
        set => Set(key, value);
    }

    private void Set(Node key, int value)
    {
        if ((_count + 1) * 2 > _keys.Length) Grow();
        int mask = _keys.Length - 1;
        for (int i = Hash(key) & mask; ; i = (i + 1) & mask)
        {
            var k = _keys[i];
            if (k is null) { _keys[i] = key; _values[i] = value; _count++; return; }
            if (ReferenceEquals(k, key)) { _values[i] = value; return; }
        }
    }

    private void Grow()
    {
        var (keys, values) = (_keys, _values);
        _keys = new Node?[keys.Length * 2];
        _values = new int[keys.Length * 2];
        _count = 0;
        for (int i = 0; i < keys.Length; i++)
            if (keys[i] is { } k) Set(k, values[i]);
    }
}
