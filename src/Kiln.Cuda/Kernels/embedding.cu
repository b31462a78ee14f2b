// Embedding gather out[i, :] = table[ids[i], :] and its backward, the scatter-add dtable[ids[i], :] += dout[i, :]
// (atomicAdd: repeated ids accumulate). An id outside [0, vocab) gathers zeros and scatters nothing; the gather
// also records the first such id in err (when given: [flag, id, vocab, 2 = index_select]) for the host to report.
__device__ __forceinline__ void record_bad_id(i64* err, i64 id, i64 vocab)
{
    if (err && atomicCAS((unsigned long long*)err, 0ULL, 1ULL) == 0ULL) { err[1] = id; err[2] = vocab; err[3] = 2; }
}

template <typename E, typename TI>
__device__ __forceinline__ void gather(const E* __restrict__ table, const TI* __restrict__ ids, E* __restrict__ out, i64 n, int dim, i64 vocab, i64* err)
{
    i64 total = n * dim;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x)
    {
        i64 i = e / dim;
        int c = (int)(e - i * dim);
        i64 id = (i64)ids[i];
        bool ok = id >= 0 && id < vocab;
        if (!ok && c == 0) record_bad_id(err, id, vocab);
        out[e] = ok ? table[id * dim + c] : (E)0;
    }
}
extern "C" __global__ void gather_f32_i64(const float* table, const i64* ids, float* out, i64 n, int dim, i64 vocab, i64* err) { gather<float, i64>(table, ids, out, n, dim, vocab, err); }
extern "C" __global__ void gather_f32_i32(const float* table, const int* ids, float* out, i64 n, int dim, i64 vocab, i64* err) { gather<float, int>(table, ids, out, n, dim, vocab, err); }
extern "C" __global__ void gather_b16_i64(const bf16* table, const i64* ids, bf16* out, i64 n, int dim, i64 vocab, i64* err) { gather<bf16, i64>(table, ids, out, n, dim, vocab, err); }
extern "C" __global__ void gather_b16_i32(const bf16* table, const int* ids, bf16* out, i64 n, int dim, i64 vocab, i64* err) { gather<bf16, int>(table, ids, out, n, dim, vocab, err); }

template <typename TI>
__device__ __forceinline__ void scatter_add(const float* __restrict__ dout, const TI* __restrict__ ids, float* dtable, i64 n, int dim, i64 vocab)
{
    i64 total = n * dim;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x)
    {
        i64 i = e / dim;
        int c = (int)(e - i * dim);
        i64 id = (i64)ids[i];
        if (id >= 0 && id < vocab) atomicAdd(dtable + id * dim + c, dout[e]);
    }
}
extern "C" __global__ void scatter_add_f32_i64(const float* dout, const i64* ids, float* dtable, i64 n, int dim, i64 vocab) { scatter_add<i64>(dout, ids, dtable, n, dim, vocab); }
extern "C" __global__ void scatter_add_f32_i32(const float* dout, const int* ids, float* dtable, i64 n, int dim, i64 vocab) { scatter_add<int>(dout, ids, dtable, n, dim, vocab); }
