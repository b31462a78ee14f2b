namespace Kiln.LoRA.Tests;

public class TestDataTests
{
    [Fact]
    public void DataFolderIsFound() => Assert.True(Directory.Exists(TestData.File("ops")));
}
