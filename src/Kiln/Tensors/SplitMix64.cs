namespace Kiln;

/// <summary>SplitMix64 (Steele, Lea and Flood 2014; the reference code is Vigna's splitmix64.c): a tiny PRNG
/// whose output is fixed by its definition, unlike <see cref="System.Random"/> whose algorithm may change
/// between .NET versions. Random tensors, LoRA dropout masks and data order must be reproducible across processes and runtimes so that a resumed
/// run sees exactly the batches an uninterrupted run would.</summary>
public struct SplitMix64
{
    private ulong _state;

    public SplitMix64(ulong seed) => _state = seed;

    /// <summary>The next 64 random bits.</summary>
    public ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1) from the top 53 bits.</summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, <paramref name="bound"/>), without modulo bias: draws are rejected
    /// when they fall in the incomplete last block of size <c>2^64 mod bound</c>.</summary>
    public int NextBelow(int bound)
    {
        if (bound <= 0) throw new ArgumentOutOfRangeException(nameof(bound), bound, "must be positive");
        ulong b = (ulong)bound;
        ulong limit = ulong.MaxValue - (ulong.MaxValue % b + 1) % b;   // largest accepted value
        ulong x;
        do x = Next(); while (x > limit);
        return (int)(x % b);
    }

    /// <summary>Fisher-Yates shuffle (Durstenfeld's in-place form, from the end).</summary>
    public void Shuffle<T>(Span<T> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = NextBelow(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>The generator for one epoch of a seeded run: the seed and epoch are mixed through one
    /// SplitMix64 step each so that nearby seeds/epochs give unrelated streams.</summary>
    public static SplitMix64 ForEpoch(ulong seed, int epoch)
    {
        var mix = new SplitMix64(seed);
        ulong s = mix.Next();
        var mix2 = new SplitMix64(s ^ (ulong)(uint)epoch);
        return new SplitMix64(mix2.Next());
    }
}
