// Environment switches read as booleans (KILN_TF32): the spellings accepted, and a clear error naming the variable
// and the value for anything else.
namespace Kiln.Tests.Runtime;

public class SettingsTests
{
    [Theory]
    [InlineData(null, false)] [InlineData("", false)] [InlineData("0", false)] [InlineData(" Off ", false)] [InlineData("no", false)]
    [InlineData("1", true)] [InlineData("TRUE", true)] [InlineData("on", true)] [InlineData("yes", true)]
    public void BooleanSwitchesAcceptTheUsualSpellings(string? value, bool expected) =>
        Assert.Equal(expected, Settings.ParseBool("KILN_TF32", value));

    [Fact]
    public void AnythingElseNamesTheVariableAndTheValue()
    {
        var e = Assert.Throws<FormatException>(() => Settings.ParseBool("KILN_TF32", "maybe"));
        Assert.Contains("KILN_TF32", e.Message);
        Assert.Contains("'maybe'", e.Message);
    }
}
