using System.Buffers.Binary;
using System.Text;

namespace Kiln.LoRA.Tokenizers;

/// <summary>
/// The llama2.c <c>tokenizer.bin</c> tokenizer (stories260K's tok512.bin, Llama 2's 32000-piece vocabulary),
/// encoding and decoding exactly as llama2.c's run.c does. File layout: int32 max_token_length, then per
/// token float32 score, int32 byte length n and n raw bytes, until the end of the file.
/// Ids 0/1/2 are unk/BOS/EOS; ids 3..258 are the byte-fallback pieces &lt;0x00&gt;..&lt;0xFF&gt;.
/// </summary>
public sealed class Llama2cTokenizer : ITokenizer
{
    private const int ByteFallbackBase = 3;
    private const int ByteFallbackCount = 256;

    /// <summary>run.c starts its best-score search at -1e10 with a strict comparison, so pieces scoring at or
    /// below it never merge.</summary>
    private const float NeverMergeScore = -1e10f;

    private readonly byte[][] _pieces;
    private readonly float[] _scores;

    // Pieces as Latin-1 strings (one char per byte) so that a span of concatenated bytes can be looked up
    // without allocating (alternate span lookup).
    private readonly Dictionary<string, int> _idByPiece;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _idBySpan;
    private readonly string[] _pieceChars;
    private readonly int _dummyPrefixId;
    private readonly Dictionary<long, int> _mergeablePairs;

    /// <summary>Longest piece in bytes, as the file's header declares it.</summary>
    public int MaxTokenLength { get; }

    public int VocabSize => _pieces.Length;
    public int? BosId => 1;
    public int? EosId => 2;

    private Llama2cTokenizer(int maxTokenLength, byte[][] pieces, float[] scores, string source)
    {
        MaxTokenLength = maxTokenLength;
        _pieces = pieces;
        _scores = scores;
        _pieceChars = new string[pieces.Length];
        _idByPiece = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
        for (int id = 0; id < pieces.Length; id++)
        {
            _pieceChars[id] = Encoding.Latin1.GetString(pieces[id]);
            _idByPiece.TryAdd(_pieceChars[id], id); // first id wins for duplicate pieces, as in the reference
        }
        _idBySpan = _idByPiece.GetAlternateLookup<ReadOnlySpan<char>>();
        _mergeablePairs = FindMergeablePairs(_pieceChars, scores, _idBySpan);
        if (!_idByPiece.TryGetValue(" ", out _dummyPrefixId))
            throw new InvalidDataException($"{source}: no \" \" piece, which encoding needs as the dummy prefix");
    }

    /// <summary>Loads a llama2.c tokenizer.bin; throws <see cref="InvalidDataException"/> naming the problem
    /// (truncated entry, impossible length, too few pieces) for a damaged file.</summary>
    public static Llama2cTokenizer Load(string path) => Parse(TokenizerFile.ReadAllBytes(path), Path.GetFileName(path));

    /// <summary>Parses the bytes of a tokenizer.bin; <paramref name="source"/> names it in error messages.</summary>
    public static Llama2cTokenizer Parse(ReadOnlySpan<byte> data, string source = "tokenizer.bin")
    {
        if (data.Length < 4)
            throw new InvalidDataException($"{source}: {data.Length} bytes is too short for a llama2.c tokenizer (no max_token_length header)");
        int maxLen = BinaryPrimitives.ReadInt32LittleEndian(data);
        if (maxLen <= 0 || maxLen > 1 << 16)
            throw new InvalidDataException($"{source}: max_token_length {maxLen} is not plausible; not a llama2.c tokenizer.bin?");

        var pieces = new List<byte[]>();
        var scores = new List<float>();
        int offset = 4;
        while (offset < data.Length)
        {
            int id = pieces.Count;
            if (data.Length - offset < 8)
                throw new InvalidDataException($"{source}: piece {id} header (score, length) runs past the end of the file at offset {offset}");
            float score = BinaryPrimitives.ReadSingleLittleEndian(data[offset..]);
            int length = BinaryPrimitives.ReadInt32LittleEndian(data[(offset + 4)..]);
            offset += 8;
            if (length < 0 || length > maxLen)
                throw new InvalidDataException($"{source}: piece {id} length {length} at offset {offset - 4} is outside 0..max_token_length ({maxLen})");
            if (length > data.Length - offset)
                throw new InvalidDataException($"{source}: piece {id} length {length} runs past the end of the file at offset {offset}");
            pieces.Add(data.Slice(offset, length).ToArray());
            scores.Add(score);
            offset += length;
        }
        if (pieces.Count < ByteFallbackBase + ByteFallbackCount)
            throw new InvalidDataException($"{source}: only {pieces.Count} pieces; a llama2.c tokenizer needs at least {ByteFallbackBase + ByteFallbackCount} (unk, BOS, EOS, 256 byte pieces)");
        return new Llama2cTokenizer(maxLen, [.. pieces], [.. scores], source);
    }

    /// <summary>The raw bytes of piece <paramref name="id"/> (for &lt;0xHH&gt; pieces, the 6 ASCII characters).</summary>
    public ReadOnlySpan<byte> PieceBytes(int id) => _pieces[id];

    /// <summary>The merge score of piece <paramref name="id"/>.</summary>
    public float Score(int id) => _scores[id];

    public int[] Encode(string text, bool addSpecial = false)
    {
        byte[] raw = Encoding.UTF8.GetBytes(text);
        var symbols = new List<int>(raw.Length + 2);
        if (raw.Length > 0) symbols.Add(_dummyPrefixId);

        // run.c groups a byte with at most 3 following continuation bytes (10xxxxxx) into one "character".
        Span<char> chars = stackalloc char[4];
        for (int i = 0; i < raw.Length;)
        {
            int j = i + 1;
            while (j < raw.Length && (raw[j] & 0xC0) == 0x80 && j - i < 4) j++;
            for (int k = i; k < j; k++) chars[k - i] = (char)raw[k];
            if (_idBySpan.TryGetValue(chars[..(j - i)], out int id))
                symbols.Add(id);
            else
                for (int k = i; k < j; k++) symbols.Add(ByteFallbackBase + raw[k]);
            i = j;
        }

        int[] merged = PairMerger.Merge(symbols, new ScoreRule(this));
        return addSpecial ? [BosId!.Value, .. merged] : merged;
    }

    /// <summary>
    /// Every mergeable pair, found once at load by splitting each piece in two: (left id, right id) → the id
    /// run.c's lookup of the concatenation gives, if it scores above <see cref="NeverMergeScore"/>. Turns the
    /// merge loop's string concatenation and lookup into one integer-keyed lookup.
    /// </summary>
    private static Dictionary<long, int> FindMergeablePairs(string[] pieceChars, float[] scores,
        Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> idBySpan)
    {
        var pairs = new Dictionary<long, int>();
        foreach (string piece in pieceChars)
        {
            if (!idBySpan.TryGetValue(piece, out int merged) || !(scores[merged] > NeverMergeScore)) continue;
            for (int split = 1; split < piece.Length; split++)
                if (idBySpan.TryGetValue(piece.AsSpan(0, split), out int left) && idBySpan.TryGetValue(piece.AsSpan(split), out int right))
                    pairs[PairKey(left, right)] = merged;
        }
        return pairs;
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Merges a pair when the concatenation of the two pieces is itself a piece; higher score first.</summary>
    private readonly struct ScoreRule(Llama2cTokenizer tok) : IMergeRule
    {
        public bool TryMerge(int left, int right, out int merged, out double priority)
        {
            priority = 0;
            if (!tok._mergeablePairs.TryGetValue(PairKey(left, right), out merged)) return false;
            priority = -(double)tok._scores[merged];
            return true;
        }
    }

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecial = true)
    {
        var bytes = new List<byte>(ids.Length * 4);
        int previous = -1;
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_pieces.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id outside the vocabulary (0..{_pieces.Length - 1})");
            if (!(skipSpecial && IsSpecial(id)))
                bytes.AddRange(DecodePiece(previous, id));
            previous = id;
        }
        return Encoding.UTF8.GetString([.. bytes]);
    }

    /// <summary>The bytes run.c prints for <paramref name="id"/> following <paramref name="previous"/>: the piece
    /// right after BOS loses one leading space (the dummy prefix), and &lt;0xHH&gt; pieces are the raw byte.
    /// Useful for streaming generation, where a multi-byte character may span several tokens.</summary>
    public ReadOnlySpan<byte> DecodePiece(int previous, int id)
    {
        ReadOnlySpan<byte> piece = _pieces[id];
        if (previous == BosId && piece.Length > 0 && piece[0] == (byte)' ') piece = piece[1..];
        return TryParseByteFallback(piece, out byte value) ? SingleBytes.AsSpan(value, 1) : piece;
    }

    private static readonly byte[] SingleBytes = [.. Enumerable.Range(0, 256).Select(b => (byte)b)];

    private static bool TryParseByteFallback(ReadOnlySpan<byte> piece, out byte value)
    {
        value = 0;
        if (piece.Length != 6 || piece[0] != '<' || piece[1] != '0' || piece[2] != 'x' || piece[5] != '>') return false;
        return byte.TryParse(piece.Slice(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }

    private bool IsSpecial(int id) => id == BosId || id == EosId;
}
