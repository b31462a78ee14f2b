using Kiln.LoRA.Data;

namespace Kiln.LoRA.Tests.Data;



public class SplitMix64Tests
{
    [Fact]
    public void MatchesTheReferenceImplementation()
    {
        // Outputs of Vigna's splitmix64.c (seeded with x = 0 and x = 1234567).
        var zero = new SplitMix64(0);
        Assert.Equal([0xE220A8397B1DCDAFUL, 0x6E789E6AA1B965F4UL, 0x06C45D188009454FUL], [zero.Next(), zero.Next(), zero.Next()]);
        var other = new SplitMix64(1234567);
        Assert.Equal([6457827717110365317UL, 3203168211198807973UL, 9817491932198370423UL], [other.Next(), other.Next(), other.Next()]);
    }

    [Fact]
    public void ShuffleIsAPermutationAndNextBelowStaysInRange()
    {
        var rng = new SplitMix64(99);
        int[] items = [.. Enumerable.Range(0, 50)];
        rng.Shuffle(items.AsSpan());
        Assert.Equal(Enumerable.Range(0, 50), items.Order());
        Assert.NotEqual(Enumerable.Range(0, 50), items);
        var counts = new int[3];
        for (int i = 0; i < 3000; i++) counts[rng.NextBelow(3)]++;
        Assert.All(counts, c => Assert.InRange(c, 850, 1150));
        Assert.Throws<ArgumentOutOfRangeException>(() => rng.NextBelow(0));
    }
}
