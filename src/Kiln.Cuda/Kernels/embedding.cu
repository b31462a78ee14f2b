// Embedding gather out[i, :] = table[ids[i], :] and its backward, the scatter-add dtable[ids[i], :] += dout[i, :]
// (atomicAdd: repeated ids accumulate). An id outside [0, vocab) gathers zeros and scatters nothing (padding).
template <typename E, typename TI>
__device__ __forceinline__ void gather(const E* __restrict__ table, const TI* __restrict__ ids, E* __restrict__ out, i64 n, int dim, i64 vocab)
{
    i64 total = n * dim;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x)
    {
        i64 i = e / dim;
        int c = (int)(e - i * dim);
        i64 id = (i64)ids[i];
        out[e] = (id >= 0 && id < vocab) ? table[id * dim + c] : (E)0;
    }
}
extern "C" __global__ void gather_f32_i64(const float* table, const i64* ids, float* out, i64 n, int dim, i64 vocab) { gather<float, i64>(table, ids, out, n, dim, vocab); }
extern "C" __global__ void gather_f32_i32(const float* table, const int* ids, float* out, i64 n, int dim, i64 vocab) { gather<float, int>(table, ids, out, n, dim, vocab); }
extern "C" __global__ void gather_b16_i64(const bf16* table, const i64* ids, bf16* out, i64 n, int dim, i64 vocab) { gather<bf16, i64>(table, ids, out, n, dim, vocab); }
extern "C" __global__ void gather_b16_i32(const bf16* table, const int* ids, bf16* out, i64 n, int dim, i64 vocab) { gather<bf16, int>(table, ids, out, n, dim, vocab); }

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
