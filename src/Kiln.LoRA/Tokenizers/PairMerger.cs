namespace Kiln.LoRA.Tokenizers;

/// <summary>Decides whether two adjacent symbols merge, into what, and how urgently.</summary>
internal interface IMergeRule
{
    /// <summary>True when <paramref name="left"/> followed by <paramref name="right"/> merges into
    /// <paramref name="merged"/>; smaller <paramref name="priority"/> merges first.</summary>
    bool TryMerge(int left, int right, out int merged, out double priority);
}

/// <summary>
/// Greedy pairwise merging: repeatedly merge the adjacent pair with the smallest priority, ties going to the
/// leftmost pair. This is exactly what llama2.c's run.c (best score) and Hugging Face BPE (lowest rank) do,
/// but with a doubly linked list and a lazily invalidated heap it costs O(n log n) instead of O(n²) per call,
/// which matters because training encodes whole corpora in one call.
/// </summary>
internal static class PairMerger
{
    public static int[] Merge<TRule>(List<int> symbols, in TRule rule) where TRule : struct, IMergeRule
    {
        int n = symbols.Count;
        if (n < 2) return [.. symbols];
        var ids = symbols.ToArray();
        var next = new int[n];
        var prev = new int[n];
        for (int i = 0; i < n; i++) { next[i] = i + 1; prev[i] = i - 1; }
        next[n - 1] = -1;
        var alive = new bool[n];
        Array.Fill(alive, true);

        // Element = (left position, left id, right id, merged id); ordered by (priority, left position), so equal
        // priorities resolve leftmost-first. Positions keep their original order, so "leftmost" never changes.
        var heap = new PriorityQueue<(int Pos, int Left, int Right, int Merged), (double, int)>(n, PriorityThenPosition.Instance);
        void Offer(int pos, in TRule r)
        {
            if (pos < 0) return;
            int right = next[pos];
            if (right < 0) return;
            if (r.TryMerge(ids[pos], ids[right], out int merged, out double priority))
                heap.Enqueue((pos, ids[pos], ids[right], merged), (priority, pos));
        }
        for (int i = 0; i < n - 1; i++) Offer(i, rule);

        while (heap.TryDequeue(out var m, out _))
        {
            // Stale entries (a side was merged away or changed id since they were queued) are skipped.
            if (!alive[m.Pos] || ids[m.Pos] != m.Left) continue;
            int right = next[m.Pos];
            if (right < 0 || ids[right] != m.Right) continue;

            ids[m.Pos] = m.Merged;
            alive[right] = false;
            int after = next[right];
            next[m.Pos] = after;
            if (after >= 0) prev[after] = m.Pos;
            Offer(prev[m.Pos], rule);
            Offer(m.Pos, rule);
        }

        var result = new List<int>(n);
        for (int i = 0; i >= 0; i = next[i]) result.Add(ids[i]);
        return [.. result];
    }

    private sealed class PriorityThenPosition : IComparer<(double Priority, int Pos)>
    {
        public static readonly PriorityThenPosition Instance = new();
        public int Compare((double Priority, int Pos) a, (double Priority, int Pos) b)
        {
            int c = a.Priority.CompareTo(b.Priority);
            return c != 0 ? c : a.Pos.CompareTo(b.Pos);
        }
    }
}
