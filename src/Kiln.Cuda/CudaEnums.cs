// Public enums mirroring the CUDA headers' numeric values (cuda.h, library_types.h, cublas_api.h,
// cublasLt.h of CUDA 13.0; unchanged since CUDA 11/12).
namespace Kiln.Cuda;

/// <summary>CUstreamCaptureMode.</summary>
public enum StreamCaptureMode
{
    Global = 0,
    ThreadLocal = 1,
    Relaxed = 2,
}

/// <summary>cudaDataType_t (library_types.h).</summary>
public enum CudaDataType
{
    R32F = 0,
    R64F = 1,
    R16F = 2,
    R8I = 3,
    R32I = 10,
    R16BF = 14,
}

/// <summary>cublasComputeType_t (cublas_api.h).</summary>
public enum CublasComputeType
{
    Compute16F = 64,
    Compute16FPedantic = 65,
    Compute32F = 68,
    Compute32FPedantic = 69,
    Compute64F = 70,
    Compute64FPedantic = 71,
    Compute32I = 72,
    Compute32IPedantic = 73,
    Compute32FFast16F = 74,
    Compute32FFast16BF = 75,
    Compute32FFastTF32 = 77,
}

/// <summary>cublasOperation_t.</summary>
public enum CublasOperation { N = 0, T = 1, C = 2 }

/// <summary>cublasLtOrder_t (only the plain orders).</summary>
public enum CublasLtOrder { Col = 0, Row = 1 }

/// <summary>cublasLtEpilogue_t.</summary>
public enum CublasLtEpilogue : uint
{
    Default = 1,
    Relu = 2,
    ReluAux = 130,
    Bias = 4,
    ReluBias = 6,
    ReluAuxBias = 134,
    DRelu = 136,
    DReluBGrad = 152,
    Gelu = 32,
    GeluAux = 160,
    GeluBias = 36,
    GeluAuxBias = 164,
    DGelu = 192,
    DGeluBGrad = 208,
    BGradA = 256,
    BGradB = 512,
}

/// <summary>cublasLtMatmulDescAttributes_t (the ones Kiln sets; value types in comments).</summary>
public enum CublasLtMatmulDescAttribute
{
    ComputeType = 0,            // int32 cublasComputeType_t
    ScaleType = 1,              // int32 cudaDataType_t
    PointerMode = 2,            // int32
    TransA = 3,                 // int32 cublasOperation_t
    TransB = 4,                 // int32
    TransC = 5,                 // int32
    FillMode = 6,               // int32
    Epilogue = 7,               // uint32 cublasLtEpilogue_t
    BiasPointer = 8,            // void*
    BiasBatchStride = 10,       // int64
    EpilogueAuxPointer = 11,    // void*
    EpilogueAuxLd = 12,         // int64
    EpilogueAuxBatchStride = 13,// int64
    AlphaVectorBatchStride = 14,// int64
    SmCountTarget = 15,         // int32
    BiasDataType = 26,          // int32 cudaDataType_t
}

/// <summary>cublasLtMatrixLayoutAttribute_t.</summary>
public enum CublasLtLayoutAttribute
{
    Type = 0,               // uint32 cudaDataType
    Order = 1,              // int32 cublasLtOrder_t
    Rows = 2,               // uint64
    Cols = 3,               // uint64
    Ld = 4,                 // int64
    BatchCount = 5,         // int32
    StridedBatchOffset = 6, // int64
}

/// <summary>cublasLtMatmulPreferenceAttributes_t.</summary>
public enum CublasLtPreferenceAttribute
{
    SearchMode = 0,         // uint32
    MaxWorkspaceBytes = 1,  // uint64
    MinAlignmentABytes = 5, // uint32, default 256
    MinAlignmentBBytes = 6,
    MinAlignmentCBytes = 7,
    MinAlignmentDBytes = 8,
}
