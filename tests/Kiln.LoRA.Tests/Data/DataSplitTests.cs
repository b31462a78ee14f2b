using Kiln.LoRA.Data;

namespace Kiln.LoRA.Tests.Data;

public class DataSplitTests
{
    [Theory]
    [InlineData(10, 0.2, 2)]
    [InlineData(10, 0.01, 1)]   // a positive fraction holds out at least one document
    [InlineData(2, 0.9, 1)]     // and leaves at least one for training
    [InlineData(7, 0.5, 3)]
    public void HoldsOutTheLastDocuments(int count, double fraction, int held)
    {
        int[] items = [.. Enumerable.Range(0, count)];
        var (train, validation) = DataSplit.HoldOutLast(items, fraction);
        Assert.Equal(items[..(count - held)], train);
        Assert.Equal(items[(count - held)..], validation);
    }

    [Fact]
    public void ZeroFractionKeepsEverythingAndBadArgumentsThrow()
    {
        var (train, validation) = DataSplit.HoldOutLast([1, 2, 3], 0);
        Assert.Equal([1, 2, 3], train);
        Assert.Empty(validation);
        Assert.Throws<ArgumentOutOfRangeException>(() => DataSplit.HoldOutLast([1, 2], 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => DataSplit.HoldOutLast([1, 2], double.NaN));
        Assert.Throws<ArgumentException>(() => DataSplit.HoldOutLast([1], 0.5));
    }
}
