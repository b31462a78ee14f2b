// Attention on the CPU, flash-style: each query row streams over its keys with an online softmax (running
// max and sum), so no (T, S) score matrix exists; only one row of S scores in the backward pass. Rows run in
// parallel; the backward pass accumulates dq/dk/dv per worker (broadcast k/v are shared by query groups).
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Kiln.Graph;
using Kiln.Runtime;

namespace Kiln.Cpu;

internal static class AttentionKernel
{
    public static Realised Forward(Realised q, Realised k, Realised v, Realised? valid, AttentionAttrs a, int[] outShape)
    {
        var g = new Geometry(q, k, v, valid);
        q = Strided.Contiguous(q); k = Strided.Contiguous(k); v = Strided.Contiguous(v);
        var o = Realised.Contiguous(BufferPool.Rent(q.DType, Shapes.Numel(outShape)), outShape);
        if (q.DType == DType.Float32) Forward(g, (float)a.Scale, a.Causal, q, k, v, o);
        else Forward<double>(g, a.Scale, a.Causal, q, k, v, o);
        return o;
    }

    public static Realised Backward(Realised q, Realised k, Realised v, Realised o, Realised dO, Realised? valid, AttentionAttrs a)
    {
        var g = new Geometry(q, k, v, valid);
        q = Strided.Contiguous(q); k = Strided.Contiguous(k); v = Strided.Contiguous(v); o = Strided.Contiguous(o); dO = Strided.Contiguous(dO);
        long total = q.Numel + k.Numel + v.Numel;
        var r = Realised.Contiguous(BufferPool.Rent(q.DType, total), [(int)total]);
        if (q.DType == DType.Float32) Backward(g, (float)a.Scale, a.Causal, q, k, v, o, dO, r);
        else Backward<double>(g, a.Scale, a.Causal, q, k, v, o, dO, r);
        return r;
    }

    private static void Forward<T>(Geometry g, T scale, bool causal, Realised q, Realised k, Realised v, Realised o)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        long rows = (long)g.Batches * g.T;
        Par.For(rows, Par.ThreadsFor(rows * g.S * (g.D + g.Dv), 1 << 14), (r0, r1) =>
        {
            ReadOnlySpan<T> qs = q.Span<T>();
            Span<T> os = o.Span<T>();
            var kT = new T[g.D * g.Stride]; var vT = new T[g.Dv * g.Stride]; var p = new T[g.Stride];
            float[][] p4 = typeof(T) == typeof(float) && GroupRows ? [new float[g.Stride], new float[g.Stride], new float[g.Stride], new float[g.Stride]] : [];
            Span<int> lens = stackalloc int[4];
            Span<float> sums = stackalloc float[4];
            int loaded = -1;
            for (long r = r0; r < r1; r++)
            {
                int n = (int)(r / g.T), i = (int)(r % g.T);
                if (n != loaded) { g.Transposed(k.Span<T>(), v.Span<T>(), n, kT, vT); loaded = n; }
                if (p4.Length > 0 && i + 4 <= g.T && r + 4 <= r1)
                {
                    // Four query rows of one batch entry share every load of kᵀ and vᵀ (bit-identical to row by row).
                    for (int u = 0; u < 4; u++) lens[u] = g.KeysFor(i + u, causal);
                    var q4 = MemoryMarshal.Cast<T, float>(qs.Slice((int)(g.QOff[n] + (long)i * g.D), 4 * g.D));
                    int chunks = AttentionRowsF32.Probabilities4(q4, (float[])(object)kT, g.Stride, float.CreateTruncating(scale), p4, lens, sums);
                    AttentionRowsF32.Output4(p4, chunks, (float[])(object)vT, g.Stride, sums,
                        MemoryMarshal.Cast<T, float>(os.Slice((int)(r * g.Dv), 4 * g.Dv)));
                    r += 3;
                    continue;
                }
                int len = g.KeysFor(i, causal);
                var oi = os.Slice((int)(r * g.Dv), g.Dv);
                if (typeof(T) == typeof(float))
                {
                    var qf = MemoryMarshal.Cast<T, float>(qs.Slice((int)(g.QOff[n] + (long)i * g.D), g.D));
                    float[] kf = (float[])(object)kT, vf = (float[])(object)vT, pf = (float[])(object)p;
                    float lf = AttentionRowsF32.Probabilities(qf, kf, g.Stride, float.CreateTruncating(scale), pf, len);
                    AttentionRowsF32.Output(pf, len, vf, g.Stride, lf, MemoryMarshal.Cast<T, float>(oi));
                    continue;
                }
                T l = Probabilities(g, qs.Slice((int)(g.QOff[n] + (long)i * g.D), g.D), kT, scale, p.AsSpan(0, len));
                for (int d = 0; d < g.Dv; d++) oi[d] = TensorPrimitives.Dot<T>(p.AsSpan(0, len), vT.AsSpan(d * g.Stride, len)) / l;
            }
        });
    }

    /// <summary>p = exp(scale·q·kⱼ − max) over the row's keys (vectorised along the keys: kᵀ is (D, S)); returns Σp.</summary>
    private static T Probabilities<T>(Geometry g, ReadOnlySpan<T> qi, T[] kT, T scale, Span<T> p) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int len = p.Length;
        p.Clear();
        for (int d = 0; d < g.D; d++) TensorPrimitives.MultiplyAdd<T>(kT.AsSpan(d * g.Stride, len), qi[d] * scale, p, p);
        T m = TensorPrimitives.Max<T>(p);
        if (typeof(T) == typeof(float))
        {
            var pf = System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(p);
            return T.CreateTruncating(FastExp.ExpShiftedSum(pf, float.CreateTruncating(m), pf));
        }
        TensorPrimitives.Subtract<T>(p, m, p);
        TensorPrimitives.Exp<T>(p, p);
        return TensorPrimitives.Sum<T>(p);
    }

    /// <summary>Test hook: false runs the fp32 forward and backward one query row at a time (the four-row forms' reference twin).</summary>
    internal static bool GroupRows = true;

    private static void Backward<T>(Geometry g, T scale, bool causal, Realised q, Realised k, Realised v, Realised o, Realised dO, Realised result)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int threads = Par.ThreadsFor((long)g.Batches * g.T * g.S * (g.D + g.Dv), 1 << 14);
        threads = Math.Min(threads, g.Batches);
        int nq = (int)q.Numel, nk = (int)k.Numel, nv = (int)v.Numel;
        var partials = new T[threads][];
        Par.For(threads, threads, (c0, c1) =>
        {
            for (long c = c0; c < c1; c++)
            {
                var grad = new T[nq + nk + nv];   // this worker's dq | dk | dv (broadcast k/v are shared across batches)
                partials[c] = grad;
                int n0 = (int)((long)g.Batches * c / threads), n1 = (int)((long)g.Batches * (c + 1) / threads);
                BackwardBatches(g, scale, causal, q.Span<T>(), k.Span<T>(), v.Span<T>(), o.Span<T>(), dO.Span<T>(), grad, nq, nk, n0, n1);
            }
        });
        var dst = result.Span<T>();
        partials[0].CopyTo(dst);
        for (int c = 1; c < threads; c++) TensorPrimitives.Add<T>(dst, partials[c], dst);
    }

    private static void BackwardBatches<T>(Geometry g, T scale, bool causal, ReadOnlySpan<T> qs, ReadOnlySpan<T> ks, ReadOnlySpan<T> vs,
        ReadOnlySpan<T> os, ReadOnlySpan<T> dos, T[] grad, int nq, int nk, int n0, int n1)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var dq = grad.AsSpan(0, nq); var dk = grad.AsSpan(nq, nk); var dv = grad.AsSpan(nq + nk);
        var kT = new T[g.D * g.Stride]; var vT = new T[g.Dv * g.Stride];
        var dkT = new T[g.D * g.Stride]; var dvT = new T[g.Dv * g.Stride];
        var p = new T[g.Stride]; var ds = new T[g.Stride];
        var dqAcc = new Vector<float>[4 * g.D];
        float[][] p4 = typeof(T) == typeof(float) ? [new float[g.Stride], new float[g.Stride], new float[g.Stride], new float[g.Stride]] : [];
        Span<float> di4 = stackalloc float[4], sums4 = stackalloc float[4];
        Span<int> lens4 = stackalloc int[4];
        for (int n = n0; n < n1; n++)
        {
            g.Transposed(ks, vs, n, kT, vT);
            Array.Clear(dkT); Array.Clear(dvT);
            int first = 0;
            if (typeof(T) == typeof(float) && GroupRows)
                for (; first + 4 <= g.T; first += 4)   // four query rows at a time share every load of kᵀ/vᵀ/dkᵀ/dvᵀ
                {
                    for (int u = 0; u < 4; u++) lens4[u] = g.KeysFor(first + u, causal);
                    int qAt = (int)(g.QOff[n] + (long)first * g.D);
                    // The rows' probabilities (zero up to the group's last chunk), normalised, and rowsum(dO ⊙ O).
                    int chunks = AttentionRowsF32.Probabilities4(MemoryMarshal.Cast<T, float>(qs.Slice(qAt, 4 * g.D)), (float[])(object)kT, g.Stride,
                        float.CreateTruncating(scale), p4, lens4, sums4);
                    for (int u = 0; u < 4; u++)
                    {
                        long r = (long)n * g.T + first + u;
                        System.Numerics.Tensors.TensorPrimitives.Multiply(p4[u].AsSpan(0, lens4[u]), 1 / sums4[u], p4[u].AsSpan(0, lens4[u]));
                        di4[u] = System.Numerics.Tensors.TensorPrimitives.Dot(MemoryMarshal.Cast<T, float>(dos.Slice((int)(r * g.Dv), g.Dv)), MemoryMarshal.Cast<T, float>(os.Slice((int)(r * g.Dv), g.Dv)));
                    }
                    long r0 = (long)n * g.T + first;
                    AttentionRowsF32.Backward4(p4, chunks, MemoryMarshal.Cast<T, float>(qs.Slice(qAt, 4 * g.D)),
                        MemoryMarshal.Cast<T, float>(dos.Slice((int)(r0 * g.Dv), 4 * g.Dv)), di4, float.CreateTruncating(scale),
                        (float[])(object)kT, (float[])(object)vT, (float[])(object)dkT, (float[])(object)dvT, g.Stride,
                        MemoryMarshal.Cast<T, float>(dq.Slice(qAt, 4 * g.D)), dqAcc);
                }
            for (int i = first; i < g.T; i++)
            {
                long r = (long)n * g.T + i;
                int len = g.KeysFor(i, causal);
                int qAt = (int)(g.QOff[n] + (long)i * g.D);
                var qi = qs.Slice(qAt, g.D);
                var doi = dos.Slice((int)(r * g.Dv), g.Dv);
                if (typeof(T) == typeof(float))
                {
                    float[] pf = (float[])(object)p;
                    var qf = MemoryMarshal.Cast<T, float>(qi);
                    float lf = AttentionRowsF32.Probabilities(qf, (float[])(object)kT, g.Stride, float.CreateTruncating(scale), pf, len);
                    System.Numerics.Tensors.TensorPrimitives.Multiply(pf.AsSpan(0, len), 1 / lf, pf.AsSpan(0, len));
                    var dof = MemoryMarshal.Cast<T, float>(doi);
                    float dif = System.Numerics.Tensors.TensorPrimitives.Dot(dof, MemoryMarshal.Cast<T, float>(os.Slice((int)(r * g.Dv), g.Dv)));
                    AttentionRowsF32.Backward(pf, len, qf, dof, dif, float.CreateTruncating(scale), (float[])(object)kT, (float[])(object)vT,
                        (float[])(object)dkT, (float[])(object)dvT, g.Stride, MemoryMarshal.Cast<T, float>(dq.Slice(qAt, g.D)), dqAcc);
                    continue;
                }
                Span<T> pr = p.AsSpan(0, len), dsr = ds.AsSpan(0, len);
                T l = Probabilities(g, qi, kT, scale, pr);
                TensorPrimitives.Divide<T>(pr, l, pr);
                T di = TensorPrimitives.Dot<T>(doi, os.Slice((int)(r * g.Dv), g.Dv));   // rowsum(dO ⊙ O) = Σ p·dp
                dsr.Clear();
                for (int d = 0; d < g.Dv; d++)
                {
                    TensorPrimitives.MultiplyAdd<T>(vT.AsSpan(d * g.Stride, len), doi[d], dsr, dsr);   // dp = dO·vⱼ
                    TensorPrimitives.MultiplyAdd<T>(pr, doi[d], dvT.AsSpan(d * g.Stride, len), dvT.AsSpan(d * g.Stride, len));   // dv += p·dO
                }
                TensorPrimitives.Subtract<T>(dsr, di, dsr);
                TensorPrimitives.Multiply<T>(dsr, pr, dsr);
                TensorPrimitives.Multiply<T>(dsr, scale, dsr);   // ds = p·(dp − di)·scale
                var dqi = dq.Slice(qAt, g.D);
                for (int d = 0; d < g.D; d++)
                {
                    dqi[d] += TensorPrimitives.Dot<T>(dsr, kT.AsSpan(d * g.Stride, len));
                    TensorPrimitives.MultiplyAdd<T>(dsr, qi[d], dkT.AsSpan(d * g.Stride, len), dkT.AsSpan(d * g.Stride, len));
                }
            }
            g.AddTransposed(dkT, dk, g.KOff[n], g.D);
            g.AddTransposed(dvT, dv, g.VOff[n], g.Dv);
        }
    }

    /// <summary>Sizes and, per broadcast batch index, where that batch's q, k and v start (contiguous layouts).</summary>
    private sealed class Geometry
    {
        public readonly int T, S, D, Dv, Batches;
        /// <summary>Row length of the transposed (D, ·) copies: S rounded up to a whole vector, zero-padded.</summary>
        public readonly int Stride;
        /// <summary>Keys in use: S, or the valid count of a KV cache with spare capacity.</summary>
        public readonly int Keys;
        public readonly long[] QOff, KOff, VOff;

        /// <summary>Keys query row i attends to: all of them, or up to its bottom-right-aligned diagonal when causal.</summary>
        public int KeysFor(int i, bool causal) => causal ? Math.Min(Keys, i + Keys - T + 1) : Keys;

        public Geometry(Realised q, Realised k, Realised v, Realised? valid)
        {
            T = q.Shape[^2]; S = k.Shape[^2]; D = q.Shape[^1]; Dv = v.Shape[^1];
            Stride = (S + Vector<float>.Count - 1) / Vector<float>.Count * Vector<float>.Count;
            Keys = S;
            if (valid is not null)
            {
                long n = valid.DType == DType.Int32 ? valid.Span<int>()[0] : valid.Span<long>()[0];
                if (n < 1 || n > S) throw new ArgumentOutOfRangeException(nameof(valid), $"attention: {n} valid keys given for {S} key slots");
                if (n < T) throw new ArgumentOutOfRangeException(nameof(valid), $"attention: {n} valid keys for {T} queries (each query needs its own key)");
                Keys = (int)n;
            }
            int rank = Math.Max(q.Shape.Length, Math.Max(k.Shape.Length, v.Shape.Length)) - 2;
            int[] Pad(int[] s) => [.. Enumerable.Repeat(1, rank - (s.Length - 2)), .. s.AsSpan(0, s.Length - 2)];
            int[] qb = Pad(q.Shape), kb = Pad(k.Shape), vb = Pad(v.Shape);
            var batch = new int[rank];
            for (int d = 0; d < rank; d++) batch[d] = Math.Max(qb[d], Math.Max(kb[d], vb[d]));
            Batches = (int)Shapes.Numel(batch);
            QOff = Offsets(batch, qb, (long)T * D); KOff = Offsets(batch, kb, (long)S * D); VOff = Offsets(batch, vb, (long)S * Dv);
        }

        /// <summary>Batch n's k and v as (D, S) and (Dv, S), so a query row's work runs along the keys.</summary>
        public void Transposed<T>(ReadOnlySpan<T> k, ReadOnlySpan<T> v, int n, T[] kT, T[] vT) where T : unmanaged
        {
            var kb = k.Slice((int)KOff[n], S * D); var vb = v.Slice((int)VOff[n], S * Dv);
            for (int j = 0; j < Keys; j++)
            {
                for (int d = 0; d < D; d++) kT[d * Stride + j] = kb[j * D + d];
                for (int d = 0; d < Dv; d++) vT[d * Stride + j] = vb[j * Dv + d];
            }
        }

        /// <summary>dst (S, width) at <paramref name="offset"/> += srcᵀ, src being (width, S).</summary>
        public void AddTransposed<T>(T[] src, Span<T> dst, long offset, int width) where T : unmanaged, INumber<T>
        {
            var d0 = dst.Slice((int)offset, S * width);
            for (int j = 0; j < Keys; j++)
                for (int d = 0; d < width; d++) d0[j * width + d] += src[d * Stride + j];
        }

        private static long[] Offsets(int[] batch, int[] own, long matrix)
        {
            var r = new long[Shapes.Numel(batch)];
            var idx = new int[batch.Length];
            for (long n = 0; n < r.Length; n++)
            {
                long off = 0;
                for (int d = 0; d < batch.Length; d++) off = off * own[d] + (own[d] == 1 ? 0 : idx[d]);
                r[n] = off * matrix;
                for (int d = batch.Length - 1; d >= 0 && ++idx[d] == batch[d]; d--) idx[d] = 0;
            }
            return r;
        }
    }
}
