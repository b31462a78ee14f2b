namespace Kiln.LoRA.Tokenizers;

/// <summary>
/// GPT-2's byte-to-unicode table: every byte gets a printable character (printable Latin-1 bytes map to
/// themselves, the rest to U+0100 upwards, e.g. space → 'Ġ'), so that byte-level BPE vocabularies can be
/// stored as ordinary strings.
/// </summary>
internal static class ByteLevelAlphabet
{
    public static readonly char[] CharOfByte = BuildCharOfByte();
    public static readonly Dictionary<char, byte> ByteOfChar = CharOfByte.Select((c, b) => (c, b)).ToDictionary(t => t.c, t => (byte)t.b);

    private static char[] BuildCharOfByte()
    {
        var map = new char[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + extra++);
        }
        return map;
    }

    /// <summary>The byte-level string of <paramref name="text"/>'s UTF-8 bytes.</summary>
    public static string Encode(string text)
    {
        int count = System.Text.Encoding.UTF8.GetByteCount(text);
        Span<byte> bytes = count <= 1024 ? stackalloc byte[count] : new byte[count];
        System.Text.Encoding.UTF8.GetBytes(text, bytes);
        return string.Create(count, bytes.ToArray(), static (chars, raw) =>
        {
            for (int i = 0; i < raw.Length; i++) chars[i] = CharOfByte[raw[i]];
        });
    }
}
