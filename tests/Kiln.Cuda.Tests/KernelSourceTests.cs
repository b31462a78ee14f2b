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
}
