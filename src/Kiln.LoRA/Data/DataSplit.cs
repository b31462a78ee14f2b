namespace Kiln.LoRA.Data;

/// <summary>Validation data: either a separate file (read it like the training file) or the tail of the
/// training documents held out.</summary>
public static class DataSplit
{
    /// <summary>Holds out the last <paramref name="fraction"/> of <paramref name="items"/> (in file order) for
    /// validation. The held-out count is floor(count * fraction), but at least 1 when the fraction is positive,
    /// and at least one item is always left for training.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Fraction outside [0, 1).</exception>
    /// <exception cref="ArgumentException">A positive fraction with fewer than two items.</exception>
    public static (IReadOnlyList<T> Train, IReadOnlyList<T> Validation) HoldOutLast<T>(IReadOnlyList<T> items, double fraction)
    {
        if (!(fraction >= 0 && fraction < 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "must be in [0, 1)");
        if (fraction == 0) return (items, []);
        if (items.Count < 2)
            throw new ArgumentException($"cannot hold out validation data from {items.Count} document(s); need at least 2", nameof(items));
        int held = Math.Clamp((int)Math.Floor(items.Count * fraction), 1, items.Count - 1);
        int cut = items.Count - held;
        return ([.. items.Take(cut)], [.. items.Skip(cut)]);
    }
}
