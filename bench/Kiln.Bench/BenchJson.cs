// Source-generated JSON for the child-process results, so the trimmed GPU publish needs no reflection.
using System.Text.Json.Serialization;

namespace Kiln.Bench;

[JsonSerializable(typeof(List<RowResult>))]
[JsonSerializable(typeof(LoraResult))]
internal sealed partial class BenchJson : JsonSerializerContext;
