// Plans by structural key. A hit skips optimization, scheduling and template building; what remains per
// Eval is the key walk and the kernels. Bounded: when full, the cache starts over (plans are cheap to rebuild
// compared with how often a training loop hits the same few).
using System.Collections.Concurrent;

namespace Kiln.Runtime;

internal static class PlanCache
{
    private const int Capacity = 512;
    private static readonly ConcurrentDictionary<PlanKey, Plan> Plans = new();
    private static long _hits, _misses;

    public static long Hits => Interlocked.Read(ref _hits);
    public static long Misses => Interlocked.Read(ref _misses);
    public static int Count => Plans.Count;

    public static Plan Get(PlanKey.Walk walk, bool optimize, out bool hit)
    {
        if (Settings.IsDisabled("plancache")) { hit = false; Interlocked.Increment(ref _misses); return Plan.Build(walk, optimize); }
        if (Plans.TryGetValue(walk.Key, out var plan)) { hit = true; Interlocked.Increment(ref _hits); return plan; }
        hit = false;
        Interlocked.Increment(ref _misses);
        plan = Plan.Build(walk, optimize);
        if (Plans.Count >= Capacity) Plans.Clear();
        return Plans.GetOrAdd(walk.Key, plan);
    }
}
