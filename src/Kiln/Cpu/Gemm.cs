// TEMPORARY naive GEMM with the final API; replaced by the blocked, packed kernel.
namespace Kiln.Cpu;

internal static class Gemm
{
    internal static unsafe void Sgemm(int M, int N, int K, float alpha, float* A, long aRowStride, long aColStride,
        float* B, long bRowStride, long bColStride, float beta, float* C, long ldc, int maxThreads)
    {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                float s = 0;
                for (int k = 0; k < K; k++) s += A[i * aRowStride + k * aColStride] * B[k * bRowStride + j * bColStride];
                C[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * C[i * ldc + j]);
            }
    }

    internal static unsafe void Dgemm(int M, int N, int K, double alpha, double* A, long aRowStride, long aColStride,
        double* B, long bRowStride, long bColStride, double beta, double* C, long ldc, int maxThreads)
    {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double s = 0;
                for (int k = 0; k < K; k++) s += A[i * aRowStride + k * aColStride] * B[k * bRowStride + j * bColStride];
                C[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * C[i * ldc + j]);
            }
    }
}
