// Tolerance comparison used across the tests: |a − e| ≤ tol·(1 + |e|), NaN equal to NaN, infinities exact.
namespace Kiln.Tests;

public static class Close
{
    public static void AssertAll(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double tol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (double.IsNaN(e) && double.IsNaN(a)) continue;
            if (double.IsInfinity(e) && e == a) continue;
            if (!(Math.Abs(a - e) <= tol * (1 + Math.Abs(e))))
                Assert.Fail($"{what}: element {i} is {a:R}, expected {e:R} (tolerance {tol})");
        }
    }

    public static void AssertAll(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tol, string what)
    {
        var e = new double[expected.Length]; var a = new double[actual.Length];
        for (int i = 0; i < e.Length; i++) e[i] = expected[i];
        for (int i = 0; i < a.Length; i++) a[i] = actual[i];
        AssertAll(e, a, tol, what);
    }
}
