using System.Collections.Concurrent;
using System.Text;

namespace Kiln.LoRA.Tokenizers;

/// <summary>
/// Byte-level BPE as in Hugging Face <c>tokenizers</c> (Llama 3, Qwen2/Qwen3, GPT-2): added tokens are split
/// off first, the rest is normalized, pre-tokenized by regex, mapped byte → unicode (GPT-2's table) and merged
/// by merge rank within each piece. Load with <see cref="HfTokenizerJson.Load"/> (tokenizer.json[.gz]) or
/// <see cref="Gpt2BpeFiles.Load"/> (encoder.json + vocab.bpe), or <see cref="TokenizerLoader.Load"/>.
/// Immutable after construction; the word cache is concurrent.
/// </summary>
public sealed class HfBpeTokenizer : ITokenizer
{
    private const int MaxCachedWords = 100_000;
    private const int MaxCachedWordLength = 64;

    private readonly Dictionary<string, int> _vocab;
    private readonly string?[] _tokenById;
    private readonly Dictionary<long, (int Rank, int Merged)> _merges;
    private readonly AddedToken?[] _addedById;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly AddedTokenSplitter _splitter;
    private readonly NormalizerStep[] _normalizers;
    private readonly PreTokenizerStep[] _preTokenizers;
    private readonly bool _ignoreMerges;
    private readonly int[] _prefixIds, _suffixIds;
    private readonly ConcurrentDictionary<string, int[]> _wordCache = new(StringComparer.Ordinal);
    private int _cachedWordCount; // ConcurrentDictionary.Count takes every lock, so count separately

    public int VocabSize { get; }
    public int? BosId { get; }
    public int? EosId { get; }

    /// <summary>The ids <see cref="Encode"/> puts before the text when addSpecial (from the post-processor).</summary>
    public IReadOnlyList<int> SpecialPrefixIds => _prefixIds;

    /// <summary>The ids <see cref="Encode"/> puts after the text when addSpecial.</summary>
    public IReadOnlyList<int> SpecialSuffixIds => _suffixIds;

    /// <summary>Added tokens (special or not), which are matched verbatim before BPE.</summary>
    public IReadOnlyCollection<AddedToken> AddedTokens => _addedByContent.Values;

    internal HfBpeTokenizer(BpeDefinition d)
    {
        _vocab = d.Vocab;
        _ignoreMerges = d.IgnoreMerges;
        _normalizers = [.. d.Normalizers];
        _preTokenizers = [.. d.PreTokenizers];
        _prefixIds = [.. d.PrefixIds];
        _suffixIds = [.. d.SuffixIds];
        BosId = d.BosId;
        EosId = d.EosId;

        foreach (char c in ByteLevelAlphabet.CharOfByte)
            if (!_vocab.ContainsKey(c.ToString()))
                throw new InvalidDataException($"{d.Source}: vocabulary lacks the byte-level symbol '{c}' (U+{(int)c:X4}); not a byte-level BPE vocabulary");

        int maxId = -1;
        foreach (int id in _vocab.Values) maxId = Math.Max(maxId, id);
        foreach (var t in d.AddedTokens) maxId = Math.Max(maxId, t.Id);
        VocabSize = maxId + 1;

        _tokenById = new string?[VocabSize];
        foreach (var (token, id) in _vocab)
        {
            if (id < 0) throw new InvalidDataException($"{d.Source}: token \"{token}\" has negative id {id}");
            _tokenById[id] = token;
        }
        _addedById = new AddedToken?[VocabSize];
        _addedByContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        foreach (var t in d.AddedTokens)
        {
            if (t.Id < 0) throw new InvalidDataException($"{d.Source}: added token \"{t.Content}\" has negative id {t.Id}");
            _addedById[t.Id] = t;
            _addedByContent[t.Content] = t;
        }
        _splitter = new AddedTokenSplitter(d.AddedTokens);

        _merges = new Dictionary<long, (int, int)>(d.Merges.Count);
        for (int rank = 0; rank < d.Merges.Count; rank++)
        {
            var (a, b) = d.Merges[rank];
            // A merge whose parts or result are missing from the vocabulary can never apply (HF errors out; the
            // reference JS implementations skip it). Skipping keeps loading robust.
            if (!_vocab.TryGetValue(a, out int ia) || !_vocab.TryGetValue(b, out int ib) || !_vocab.TryGetValue(a + b, out int merged))
                continue;
            _merges.TryAdd(PairKey(ia, ib), (rank, merged)); // first (lowest) rank wins for duplicates
        }
    }

    /// <summary>The id of a vocabulary or added token (in its stored, byte-level form), or null.</summary>
    public int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out var added) ? added.Id : _vocab.TryGetValue(token, out int id) ? id : null;

    /// <summary>The stored form of token <paramref name="id"/> (byte-level characters for BPE tokens), or null.</summary>
    public string? IdToToken(int id) =>
        (uint)id >= (uint)VocabSize ? null : _addedById[id]?.Content ?? _tokenById[id];

    public int[] Encode(string text, bool addSpecial = false)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecial) ids.AddRange(_prefixIds);
        var pieces = new List<string>();
        _splitter.Split(text, plain => EncodePlainText(plain, ids, pieces), token => ids.Add(token.Id));
        if (addSpecial) ids.AddRange(_suffixIds);
        return [.. ids];
    }

    private void EncodePlainText(string text, List<int> ids, List<string> scratch)
    {
        foreach (var n in _normalizers) text = n.Apply(text);
        scratch.Clear();
        scratch.Add(text);
        var next = new List<string>();
        foreach (var step in _preTokenizers)
        {
            next.Clear();
            foreach (var piece in scratch) step.Split(piece, next);
            (scratch, next) = (next, scratch);
        }
        foreach (var piece in scratch)
            if (piece.Length > 0) ids.AddRange(EncodeWord(ByteLevelAlphabet.Encode(piece)));
    }

    private int[] EncodeWord(string word)
    {
        if (_wordCache.TryGetValue(word, out var cached)) return cached;
        int[] ids;
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole))
            ids = [whole];
        else
        {
            var symbols = new List<int>(word.Length);
            foreach (char c in word) symbols.Add(_vocab[c.ToString()]); // checked present at construction
            ids = PairMerger.Merge(symbols, new RankRule(_merges));
        }
        // The cache only memoizes a pure function, so racing writers store equal values; the bound is approximate.
        if (word.Length <= MaxCachedWordLength && Volatile.Read(ref _cachedWordCount) < MaxCachedWords && _wordCache.TryAdd(word, ids))
            Interlocked.Increment(ref _cachedWordCount);
        return ids;
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    private readonly struct RankRule(Dictionary<long, (int Rank, int Merged)> merges) : IMergeRule
    {
        public bool TryMerge(int left, int right, out int merged, out double priority)
        {
            if (merges.TryGetValue(PairKey(left, right), out var m)) { merged = m.Merged; priority = m.Rank; return true; }
            merged = -1; priority = 0;
            return false;
        }
    }

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecial = true)
    {
        var bytes = new List<byte>(ids.Length * 4);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id outside the vocabulary (0..{VocabSize - 1})");
            if (_addedById[id] is { } added)
            {
                if (!(skipSpecial && added.Special)) bytes.AddRange(Encoding.UTF8.GetBytes(added.Content));
                continue;
            }
            string? token = _tokenById[id];
            if (token == null) continue; // a hole in the id space decodes to nothing
            foreach (char c in token)
            {
                if (ByteLevelAlphabet.ByteOfChar.TryGetValue(c, out byte b)) bytes.Add(b);
                else bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
            }
        }
        return Encoding.UTF8.GetString([.. bytes]);
    }
}

/// <summary>Everything an <see cref="HfBpeTokenizer"/> is built from, whatever the file format.</summary>
internal sealed record BpeDefinition(
    string Source,
    Dictionary<string, int> Vocab,
    List<(string Left, string Right)> Merges,
    List<AddedToken> AddedTokens,
    List<NormalizerStep> Normalizers,
    List<PreTokenizerStep> PreTokenizers,
    bool IgnoreMerges,
    List<int> PrefixIds,
    List<int> SuffixIds,
    int? BosId,
    int? EosId);
