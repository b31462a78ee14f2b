// Converting between raw little-endian tensor bytes (as safetensors and llama2.c store them) and Kiln tensors.
// Both formats are little-endian and the copies below are plain memory copies: every platform .NET 10 runs
// on is little-endian.
using System.Runtime.InteropServices;

namespace Kiln.LoRA.IO;

internal static unsafe class TensorBytes
{
    /// <summary>
    /// A realised tensor holding a copy of the <paramref name="numel"/> elements at <paramref name="src"/>,
    /// read as safetensors dtype <paramref name="fileDType"/>. The caller has checked that the bytes exist.
    /// </summary>
    public static Tensor Decode(byte* src, long numel, string fileDType, int[] shape)
    {
        if (numel > Array.MaxLength)
            throw new NotSupportedException($"{numel} elements exceed what one CPU tensor can hold ({Array.MaxLength})");
        return fileDType switch
        {
            "F32" => Tensor.FromArray(Copy<float>(src, numel), shape),
            "F64" => Tensor.FromArray(Copy<double>(src, numel), shape),
            "BF16" => Tensor.FromArray(Copy<BFloat16>(src, numel), shape),
            "F16" => Tensor.FromArray(Copy<Half>(src, numel), shape),
            "I32" => Tensor.FromArray(Copy<int>(src, numel), shape),
            "I64" => Tensor.FromArray(Copy<long>(src, numel), shape),
            // bool's only valid bit patterns are 0 and 1; a byte like 0x02 must not become an invalid bool.
            "BOOL" => Tensor.FromArray(Widen(src, numel, (byte b) => b != 0), shape),
            "U8" => Tensor.FromArray(Widen(src, numel, (byte b) => (int)b), shape),
            "I8" => Tensor.FromArray(Widen(src, numel, (sbyte b) => (int)b), shape),
            "I16" => Tensor.FromArray(Widen(src, numel, (short v) => (int)v), shape),
            "U16" => Tensor.FromArray(Widen(src, numel, (ushort v) => (int)v), shape),
            "U32" => Tensor.FromArray(Widen(src, numel, (uint v) => (long)v), shape),
            _ => throw new NotSupportedException($"safetensors dtype {fileDType} has no exact Kiln dtype"),
        };
    }

    /// <summary>Writes the tensor's values as little-endian bytes of its own dtype (realising it if needed).</summary>
    public static void Write(Stream stream, Tensor t)
    {
        switch (t.DType)
        {
            case DType.Float32: WriteValues(stream, t.ToArray<float>()); break;
            case DType.Float64: WriteValues(stream, t.ToArray<double>()); break;
            case DType.BFloat16: WriteValues(stream, t.ToArray<BFloat16>()); break;
            case DType.Float16: WriteValues(stream, t.ToArray<Half>()); break;
            case DType.Int32: WriteValues(stream, t.ToArray<int>()); break;
            case DType.Int64: WriteValues(stream, t.ToArray<long>()); break;
            case DType.Bool: stream.Write(t.ToArray<bool>().Select(b => b ? (byte)1 : (byte)0).ToArray()); break;
            default: throw new NotSupportedException($"cannot write dtype {t.DType}");
        }
    }

    private static T[] Copy<T>(byte* src, long numel) where T : unmanaged
    {
        var result = GC.AllocateUninitializedArray<T>((int)numel);
        long bytes = numel * sizeof(T);
        fixed (T* dst = result) System.Buffer.MemoryCopy(src, dst, bytes, bytes);   // long sizes: tensors may exceed 2 GB
        return result;
    }

    private static TOut[] Widen<TIn, TOut>(byte* src, long numel, Func<TIn, TOut> convert) where TIn : unmanaged
    {
        var result = new TOut[numel];
        var p = (TIn*)src;   // the mapping is page-aligned and offsets need not be, so read unaligned
        for (long i = 0; i < numel; i++) result[i] = convert(System.Runtime.CompilerServices.Unsafe.ReadUnaligned<TIn>(p + i));
        return result;
    }

    private static void WriteValues<T>(Stream stream, T[] values) where T : unmanaged => stream.Write(MemoryMarshal.AsBytes(values.AsSpan()));
}
