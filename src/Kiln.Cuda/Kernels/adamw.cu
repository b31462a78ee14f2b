// Multi-tensor AdamW: one launch updates every parameter in place (torch.optim.AdamW, as
// Kiln.Cpu.OptimizerKernels.AdamW): g' = g*gradScale; m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'^2;
// p = p*decay - stepSize*m/(sqrt(v)*denomScale + eps).
// desc: one descriptor per tensor; table: (tensor, chunk) per block, chunks of `chunk` elements.
// scal (may be null): device floats {stepSize, denomScale, decay, gradScale} that override the arguments,
// so a captured graph can be replayed with new step scalars.
struct AdamDesc { float* p; const float* g; float* m; float* v; i64 n; };

extern "C" __global__ void adamw_multi_f32(const AdamDesc* __restrict__ desc, const int* __restrict__ table, int chunk,
    float stepSize, float denomScale, float decay, float gradScale, float b1, float b2, float eps, const float* scal)
{
    if (scal) { stepSize = scal[0]; denomScale = scal[1]; decay = scal[2]; gradScale = scal[3]; }
    int t = table[2 * blockIdx.x], c = table[2 * blockIdx.x + 1];
    AdamDesc d = desc[t];
    i64 start = (i64)c * chunk, end = start + chunk;
    if (end > d.n) end = d.n;
    float ob1 = 1.f - b1, ob2 = 1.f - b2;
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x)
    {
        float gi = d.g[i] * gradScale;
        float mi = b1 * d.m[i] + ob1 * gi;
        float vi = b2 * d.v[i] + ob2 * gi * gi;
        d.m[i] = mi; d.v[i] = vi;
        d.p[i] = d.p[i] * decay - stepSize * mi / (sqrtf(vi) * denomScale + eps);
    }
}
