// Without a GPU: every kernel module is embedded and self-contained (no #include: NVRTC has no headers there).
using Kiln.Cuda;

namespace Kiln.Cuda.Tests;

public class KernelSourceTests
{
    [Fact]
    public void Every_module_is_embedded_and_has_no_includes()
    {
        foreach (var m in CudaKernels.ModuleNames)
        {
            var src = CudaKernels.Source(m);
            Assert.Contains("extern \"C\" __global__", src);
            Assert.Contains("bf2f", src);   // common.cuh prepended
            Assert.DoesNotMatch("(?m)^\\s*#\\s*include", src);
        }
    }

    [Fact]
    public void Generated_literals_spell_infinities_and_nan_by_their_bits()
    {
        // NVRTC has no INFINITY/NAN macros without headers, and "-Infinity.0f" is not C: the bit patterns instead.
        Assert.Equal("__int_as_float((int)0xff800000)", Kiln.Cuda.Backend.CudaCodegen.Literal(double.NegativeInfinity, DType.Float32));
        Assert.Equal("__int_as_float(0x7f800000)", Kiln.Cuda.Backend.CudaCodegen.Literal(double.PositiveInfinity, DType.BFloat16));
        Assert.Equal("__int_as_float(0x7fc00000)", Kiln.Cuda.Backend.CudaCodegen.Literal(double.NaN, DType.Float32));
        Assert.Equal("__longlong_as_double((long long)0xfff0000000000000ULL)", Kiln.Cuda.Backend.CudaCodegen.Literal(double.NegativeInfinity, DType.Float64));
        Assert.Equal("-1.5f", Kiln.Cuda.Backend.CudaCodegen.Literal(-1.5, DType.Float32));
        Assert.Equal("2.0", Kiln.Cuda.Backend.CudaCodegen.Literal(2, DType.Float64));
        // bit patterns as the CPU reads them: the same values
        Assert.Equal(float.NegativeInfinity, BitConverter.Int32BitsToSingle(unchecked((int)0xff800000)));
        Assert.True(float.IsNaN(BitConverter.Int32BitsToSingle(0x7fc00000)));
        Assert.Equal(double.NegativeInfinity, BitConverter.Int64BitsToDouble(unchecked((long)0xfff0000000000000UL)));
    }
}
