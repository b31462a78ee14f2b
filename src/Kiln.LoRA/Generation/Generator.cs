using System.Runtime.CompilerServices;
using Kiln.LoRA.Models;
using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Generation;

/// <summary>
/// Text generation: the prompt is run once (prefill) filling a KV cache, then one token per step (decode)
/// reusing it. Only the last position's logits are computed. Streaming decodes the whole sequence and
/// emits what is new, so multi-byte characters split across tokens come out whole.
/// </summary>
public sealed class Generator(CausalLM model, ITokenizer tokenizer)
{
    public CausalLM Model => model;
    public ITokenizer Tokenizer => tokenizer;

    /// <summary>Yields generated token ids after <paramref name="promptIds"/> until a stop token or MaxTokens.</summary>
    public IEnumerable<int> GenerateIds(int[] promptIds, SamplingOptions options)
    {
        options.Validate();
        if (promptIds.Length == 0) throw new ArgumentException("generation needs at least one prompt token (encode with addSpecial for a BOS)");
        if (promptIds.Length + options.MaxTokens > model.Config.MaxPositions)
            throw new ArgumentException($"prompt ({promptIds.Length} tokens) + max tokens ({options.MaxTokens}) exceeds the model's {model.Config.MaxPositions} positions");
        var stops = StopTokens(options);
        var sampler = new Sampler(options);
        var cache = new KvCache(model.Config.Layers);
        var seen = new List<int>(promptIds);
        var logits = Step(promptIds, cache);
        for (int n = 0; n < options.MaxTokens; n++)
        {
            int next = sampler.Next(logits, seen);
            if (stops.Contains(next)) yield break;
            yield return next;
            seen.Add(next);
            if (n + 1 < options.MaxTokens) logits = Step([next], cache);
        }
    }

    /// <summary>The completion of <paramref name="prompt"/> as one string (stop strings cut it).</summary>
    public string Generate(string prompt, SamplingOptions options) => string.Concat(Stream(prompt, options));

    /// <summary>The completion, piece by piece as it is generated.</summary>
    public async IAsyncEnumerable<string> StreamAsync(string prompt, SamplingOptions options, [EnumeratorCancellation] CancellationToken cancel = default)
    {
        foreach (var piece in Stream(prompt, options))
        {
            cancel.ThrowIfCancellationRequested();
            yield return piece;
            await Task.Yield();
        }
    }

    /// <summary>Synchronous streaming: text pieces as tokens arrive, stop strings honoured.</summary>
    public IEnumerable<string> Stream(string prompt, SamplingOptions options)
    {
        var promptIds = tokenizer.Encode(prompt, addSpecial: true);
        var ids = new List<int>(promptIds);
        string before = tokenizer.Decode(promptIds.AsSpan());
        int emitted = 0;
        int hold = options.StopStrings.Count == 0 ? 0 : options.StopStrings.Max(s => s.Length) - 1;
        foreach (int id in GenerateIds(promptIds, options))
        {
            ids.Add(id);
            string text = Completion(ids, before);
            if (FirstStop(text, options.StopStrings) is int cut)
            {
                if (cut > emitted) yield return text[emitted..cut];
                yield break;
            }
            int ready = text.Length - hold;
            if (text.EndsWith('\uFFFD')) ready = Math.Min(ready, text.Length - 1);   // an unfinished UTF-8 sequence
            if (ready > emitted) { yield return text[emitted..ready]; emitted = ready; }
        }
        string final = Completion(ids, before);
        if (final.Length > emitted) yield return final[emitted..];
    }

    /// <summary>Completions for several prompts at once (left-padded into one batch).</summary>
    public IReadOnlyList<string> Generate(IReadOnlyList<string> prompts, SamplingOptions options)
    {
        var outs = GenerateIdsBatch(prompts.Select(p => tokenizer.Encode(p, addSpecial: true)).ToArray(), options);
        return outs.Select((ids, i) =>
        {
            var p = tokenizer.Encode(prompts[i], addSpecial: true);
            string text = Completion([.. p, .. ids], tokenizer.Decode(p.AsSpan()));
            return FirstStop(text, options.StopStrings) is int cut ? text[..cut] : text;
        }).ToArray();
    }

    /// <summary>Generated ids per prompt; each row is seeded with Seed + row and stops on its own.</summary>
    public int[][] GenerateIdsBatch(int[][] prompts, SamplingOptions options)
    {
        options.Validate();
        int b = prompts.Length;
        if (b == 0) return [];
        if (prompts.Any(p => p.Length == 0)) throw new ArgumentException("every prompt needs at least one token");
        int longest = prompts.Max(p => p.Length);
        if (longest + options.MaxTokens > model.Config.MaxPositions)
            throw new ArgumentException($"prompt ({longest} tokens) + max tokens ({options.MaxTokens}) exceeds the model's {model.Config.MaxPositions} positions");
        var stops = StopTokens(options);
        var samplers = Enumerable.Range(0, b).Select(i => new Sampler(options with { Seed = options.Seed + (ulong)i })).ToArray();
        var cache = new KvCache(model.Config.Layers, fixedCapacity: false);   // left padding needs the mask path
        var mask = new List<int>[b]; var next = new int[b]; var pos = new int[b];
        var ids = new int[b * longest]; var positions = new int[b * longest];
        for (int r = 0; r < b; r++)
        {
            int pad = longest - prompts[r].Length;
            mask[r] = [.. Enumerable.Repeat(0, pad), .. Enumerable.Repeat(1, prompts[r].Length)];
            for (int i = 0; i < prompts[r].Length; i++) { ids[r * longest + pad + i] = prompts[r][i]; positions[r * longest + pad + i] = i; }
            pos[r] = prompts[r].Length;
        }
        var outs = Enumerable.Range(0, b).Select(_ => new List<int>()).ToArray();
        var seen = prompts.Select(p => new List<int>(p)).ToArray();
        var done = new bool[b];
        var logits = BatchStep(ids, b, longest, positions, mask, cache);
        int vocab = model.Config.VocabSize;
        for (int n = 0; n < options.MaxTokens && !done.All(d => d); n++)
        {
            for (int r = 0; r < b; r++)
            {
                if (done[r]) { next[r] = 0; continue; }
                int t = samplers[r].Next(logits.AsSpan(r * vocab, vocab), seen[r]);
                if (stops.Contains(t)) { done[r] = true; next[r] = 0; continue; }
                outs[r].Add(t); seen[r].Add(t); next[r] = t;
            }
            if (n + 1 == options.MaxTokens || done.All(d => d)) break;
            for (int r = 0; r < b; r++) mask[r].Add(done[r] ? 0 : 1);
            logits = BatchStep(next, b, 1, pos.ToArray(), mask, cache);
            for (int r = 0; r < b; r++) pos[r]++;
        }
        return outs.Select(o => o.ToArray()).ToArray();
    }

    private float[] Step(int[] ids, KvCache cache)
    {
        var hidden = model.Hidden(Tensor.FromArray(ids, [1, ids.Length]), cache);
        var logits = model.Logits(hidden.Slice(1, -1));
        Tensor.Eval([logits, .. cache.Pending]);
        cache.Commit();
        return logits.ToArray<float>();
    }

    private float[] BatchStep(int[] ids, int b, int t, int[] positions, List<int>[] mask, KvCache cache)
    {
        var m = Tensor.FromArray(mask.SelectMany(x => x).ToArray(), [b, mask[0].Count]);
        var hidden = model.Hidden(Tensor.FromArray(ids, [b, t]), cache, new Positions(positions), m);
        var logits = model.Logits(hidden.Slice(1, -1));
        Tensor.Eval([logits, .. cache.Pending]);
        cache.Commit();
        return logits.ToArray<float>();
    }

    private HashSet<int> StopTokens(SamplingOptions o)
    {
        if (o.StopTokens is { } explicitStops) return [.. explicitStops];
        var s = new HashSet<int>(model.Config.EosTokenIds);
        if (tokenizer.EosId is int eos) s.Add(eos);
        return s;
    }

    private string Completion(List<int> ids, string promptText)
    {
        string all = tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids));
        return all.StartsWith(promptText, StringComparison.Ordinal) ? all[promptText.Length..] : all;
    }

    private static int? FirstStop(string text, IReadOnlyList<string> stops)
    {
        int? best = null;
        foreach (var s in stops)
        {
            if (s.Length == 0) continue;
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (best is null || i < best)) best = i;
        }
        return best;
    }
}
