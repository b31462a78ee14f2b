// fp32 attention rows with the loops written out over Vector<float> chunks of keys: per chunk every head
// dimension is folded in while the chunk is in registers, instead of one library call per dimension (with a
// head size of 8 the per-call overhead dominated: 45 calls per query row in the backward pass).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kiln.Cpu;

internal static class AttentionRowsF32
{
    private static readonly int W = Vector<float>.Count;

    /// <summary>p[0..len) = exp(scale·q·kⱼ − max), zero up to the next whole vector; returns Σp.</summary>
    public static float Probabilities(ReadOnlySpan<float> q, float[] kT, int stride, float scale, float[] p, int len)
    {
        int d = q.Length, chunks = (len + W - 1) / W;
        ref float kt = ref MemoryMarshal.GetArrayDataReference(kT);
        ref float pr = ref MemoryMarshal.GetArrayDataReference(p);
        for (int c = 0; c < chunks; c++)
        {
            int j = c * W;
            var acc = Vector<float>.Zero;
            for (int e = 0; e < d; e++) acc += Load(ref kt, e * stride + j) * (q[e] * scale);
            Store(acc, ref pr, j);
        }
        var row = p.AsSpan(0, len);
        float m = System.Numerics.Tensors.TensorPrimitives.Max(row);
        float sum = FastExp.ExpShiftedSum(row, m, row);
        p.AsSpan(len, chunks * W - len).Clear();   // the padded tail must not count
        return sum;
    }

    /// <summary>
    /// <see cref="Probabilities"/> for four consecutive query rows (q holds them back to back), each chunk of kᵀ
    /// loaded once for the four; per row the same operations in the same order. Writes Σp of each row to sums
    /// and returns the group's whole vectors of keys (every p[u] is zero from its row's keys up to them).
    /// </summary>
    public static int Probabilities4(ReadOnlySpan<float> q, float[] kT, int stride, float scale, float[][] p, ReadOnlySpan<int> lens, Span<float> sums)
    {
        int d = q.Length / 4, chunks = 0;
        for (int u = 0; u < 4; u++) chunks = Math.Max(chunks, (lens[u] + W - 1) / W);
        float[] p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
        ref float kt = ref MemoryMarshal.GetArrayDataReference(kT);
        for (int c = 0; c < chunks; c++)
        {
            int j = c * W;
            Vector<float> a0 = Vector<float>.Zero, a1 = Vector<float>.Zero, a2 = Vector<float>.Zero, a3 = Vector<float>.Zero;
            for (int e = 0; e < d; e++)
            {
                var k = Load(ref kt, e * stride + j);
                a0 += k * (q[e] * scale); a1 += k * (q[d + e] * scale); a2 += k * (q[2 * d + e] * scale); a3 += k * (q[3 * d + e] * scale);
            }
            Store(a0, ref MemoryMarshal.GetArrayDataReference(p0), j); Store(a1, ref MemoryMarshal.GetArrayDataReference(p1), j);
            Store(a2, ref MemoryMarshal.GetArrayDataReference(p2), j); Store(a3, ref MemoryMarshal.GetArrayDataReference(p3), j);
        }
        for (int u = 0; u < 4; u++)
        {
            var row = p[u].AsSpan(0, lens[u]);
            float m = System.Numerics.Tensors.TensorPrimitives.Max(row);
            sums[u] = FastExp.ExpShiftedSum(row, m, row);
            p[u].AsSpan(lens[u], chunks * W - lens[u]).Clear();   // beyond the row's keys: zero up to the group's last chunk
        }
        return chunks;
    }

    /// <summary><see cref="Output"/> for four rows at once (o holds them back to back), each chunk of vᵀ loaded once.</summary>
    public static void Output4(float[][] p, int chunks, float[] vT, int stride, ReadOnlySpan<float> sums, Span<float> o)
    {
        int dv = o.Length / 4;
        float[] p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
        ref float vt = ref MemoryMarshal.GetArrayDataReference(vT);
        ref float r0 = ref MemoryMarshal.GetArrayDataReference(p0); ref float r1 = ref MemoryMarshal.GetArrayDataReference(p1);
        ref float r2 = ref MemoryMarshal.GetArrayDataReference(p2); ref float r3 = ref MemoryMarshal.GetArrayDataReference(p3);
        for (int e = 0; e < dv; e++)
        {
            Vector<float> a0 = Vector<float>.Zero, a1 = Vector<float>.Zero, a2 = Vector<float>.Zero, a3 = Vector<float>.Zero;
            for (int c = 0; c < chunks; c++)
            {
                var v = Load(ref vt, e * stride + c * W);
                a0 += Load(ref r0, c * W) * v; a1 += Load(ref r1, c * W) * v; a2 += Load(ref r2, c * W) * v; a3 += Load(ref r3, c * W) * v;
            }
            o[e] = Vector.Sum(a0) / sums[0]; o[dv + e] = Vector.Sum(a1) / sums[1]; o[2 * dv + e] = Vector.Sum(a2) / sums[2]; o[3 * dv + e] = Vector.Sum(a3) / sums[3];
        }
    }

    /// <summary>o[e] = Σⱼ p[j]·vᵀ[e, j] / l.</summary>
    public static void Output(float[] p, int len, float[] vT, int stride, float l, Span<float> o)
    {
        int chunks = (len + W - 1) / W;
        ref float vt = ref MemoryMarshal.GetArrayDataReference(vT);
        ref float pr = ref MemoryMarshal.GetArrayDataReference(p);
        for (int e = 0; e < o.Length; e++)
        {
            var acc = Vector<float>.Zero;
            for (int c = 0; c < chunks; c++) acc += Load(ref pr, c * W) * Load(ref vt, e * stride + c * W);
            o[e] = Vector.Sum(acc) / l;
        }
    }

    /// <summary>
    /// One query row of the backward pass, p already normalised (zero-padded to whole vectors): per chunk
    /// dp = Σₑ dO[e]·vᵀ[e], dv += p·dO, ds = p·(dp − di)·scale, dq += ds·kᵀ, dk += ds·q.
    /// </summary>
    public static void Backward(float[] p, int len, ReadOnlySpan<float> q, ReadOnlySpan<float> dO, float di, float scale,
        float[] kT, float[] vT, float[] dkT, float[] dvT, int stride, Span<float> dq, Vector<float>[] dqAcc)
    {
        int d = q.Length, dv = dO.Length, chunks = (len + W - 1) / W;
        ref float pr = ref MemoryMarshal.GetArrayDataReference(p);
        ref float kt = ref MemoryMarshal.GetArrayDataReference(kT);
        ref float vt = ref MemoryMarshal.GetArrayDataReference(vT);
        ref float dkt = ref MemoryMarshal.GetArrayDataReference(dkT);
        ref float dvt = ref MemoryMarshal.GetArrayDataReference(dvT);
        Array.Clear(dqAcc, 0, d);
        var vdi = new Vector<float>(di);
        var vscale = new Vector<float>(scale);
        for (int c = 0; c < chunks; c++)
        {
            int j = c * W;
            var pv = Load(ref pr, j);
            var dp = Vector<float>.Zero;
            for (int e = 0; e < dv; e++)
            {
                int at = e * stride + j;
                dp += Load(ref vt, at) * dO[e];
                Store(Load(ref dvt, at) + pv * dO[e], ref dvt, at);
            }
            var ds = pv * (dp - vdi) * vscale;
            for (int e = 0; e < d; e++)
            {
                int at = e * stride + j;
                dqAcc[e] += ds * Load(ref kt, at);
                Store(Load(ref dkt, at) + ds * q[e], ref dkt, at);
            }
        }
        for (int e = 0; e < d; e++) dq[e] += Vector.Sum(dqAcc[e]);
    }

    /// <summary>
    /// Four consecutive query rows of the backward pass at once (p[0..3] normalised and zero up to
    /// <paramref name="chunks"/> whole vectors; q, dO and dq hold the four rows back to back): every chunk of kᵀ,
    /// vᵀ, dkᵀ and dvᵀ is loaded once for the four instead of once per row. Per row and element the operations and
    /// their order are those of <see cref="Backward"/>, so the result is the same bits as four calls of it.
    /// </summary>
    public static void Backward4(float[][] p, int chunks, ReadOnlySpan<float> q, ReadOnlySpan<float> dO,
        ReadOnlySpan<float> di, float scale, float[] kT, float[] vT, float[] dkT, float[] dvT, int stride, Span<float> dq, Vector<float>[] dqAcc)
    {
        float[] p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
        int d = q.Length / 4, dv = dO.Length / 4;
        ref float kt = ref MemoryMarshal.GetArrayDataReference(kT);
        ref float vt = ref MemoryMarshal.GetArrayDataReference(vT);
        ref float dkt = ref MemoryMarshal.GetArrayDataReference(dkT);
        ref float dvt = ref MemoryMarshal.GetArrayDataReference(dvT);
        Array.Clear(dqAcc, 0, 4 * d);
        var vscale = new Vector<float>(scale);
        Vector<float> di0 = new(di[0]), di1 = new(di[1]), di2 = new(di[2]), di3 = new(di[3]);
        for (int c = 0; c < chunks; c++)
        {
            int j = c * W;
            Vector<float> pv0 = Load(ref MemoryMarshal.GetArrayDataReference(p0), j), pv1 = Load(ref MemoryMarshal.GetArrayDataReference(p1), j);
            Vector<float> pv2 = Load(ref MemoryMarshal.GetArrayDataReference(p2), j), pv3 = Load(ref MemoryMarshal.GetArrayDataReference(p3), j);
            Vector<float> dp0 = Vector<float>.Zero, dp1 = Vector<float>.Zero, dp2 = Vector<float>.Zero, dp3 = Vector<float>.Zero;
            for (int e = 0; e < dv; e++)
            {
                int at = e * stride + j;
                var v = Load(ref vt, at);
                dp0 += v * dO[e]; dp1 += v * dO[dv + e]; dp2 += v * dO[2 * dv + e]; dp3 += v * dO[3 * dv + e];
                var acc = Load(ref dvt, at);
                acc = acc + pv0 * dO[e]; acc = acc + pv1 * dO[dv + e]; acc = acc + pv2 * dO[2 * dv + e]; acc = acc + pv3 * dO[3 * dv + e];
                Store(acc, ref dvt, at);
            }
            var ds0 = pv0 * (dp0 - di0) * vscale; var ds1 = pv1 * (dp1 - di1) * vscale;
            var ds2 = pv2 * (dp2 - di2) * vscale; var ds3 = pv3 * (dp3 - di3) * vscale;
            for (int e = 0; e < d; e++)
            {
                int at = e * stride + j;
                var k = Load(ref kt, at);
                dqAcc[e] += ds0 * k; dqAcc[d + e] += ds1 * k; dqAcc[2 * d + e] += ds2 * k; dqAcc[3 * d + e] += ds3 * k;
                var acc = Load(ref dkt, at);
                acc = acc + ds0 * q[e]; acc = acc + ds1 * q[d + e]; acc = acc + ds2 * q[2 * d + e]; acc = acc + ds3 * q[3 * d + e];
                Store(acc, ref dkt, at);
            }
        }
        for (int e = 0; e < 4 * d; e++) dq[e] += Vector.Sum(dqAcc[e]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Load(ref float at, int i) => Vector.LoadUnsafe(ref at, (nuint)i);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector<float> v, ref float at, int i) => v.StoreUnsafe(ref at, (nuint)i);
}
