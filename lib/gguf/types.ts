// GGUF/ggml constants shared by the writer and the reader: value-type ids, tensor-type ids and
// their block sizes, copied from ggml/include/gguf.h, ggml/include/ggml.h and gguf-py constants.py.

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const GGUF_KEY_ALIGNMENT = 'general.alignment';
export const GGML_MAX_DIMS = 4;
export const GGML_MAX_NAME = 64; // tensor names must be shorter than this (bytes, NUL excluded)

/** KV value types (enum gguf_type). */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** Fixed byte size of a scalar value type (0 for STRING/ARRAY, which are variable). */
export const GGUF_SCALAR_SIZE: Readonly<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1,
  [GgufValueType.INT8]: 1,
  [GgufValueType.UINT16]: 2,
  [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4,
  [GgufValueType.INT32]: 4,
  [GgufValueType.FLOAT32]: 4,
  [GgufValueType.BOOL]: 1,
  [GgufValueType.STRING]: 0,
  [GgufValueType.ARRAY]: 0,
  [GgufValueType.UINT64]: 8,
  [GgufValueType.INT64]: 8,
  [GgufValueType.FLOAT64]: 8,
};

/** Tensor element types (enum ggml_type); only the ones we write are named. */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
}

/**
 * [elements per block, bytes per block] for every ggml type a GGUF file may hold
 * (gguf-py GGML_QUANT_SIZES); removed ids (4, 5, 31-33, 36-38) are absent so the reader rejects them.
 */
export const GGML_TYPE_INFO: ReadonlyMap<number, { name: string; blockSize: number; typeSize: number }> = new Map(
  (
    [
      [0, 'F32', 1, 4],
      [1, 'F16', 1, 2],
      [2, 'Q4_0', 32, 18],
      [3, 'Q4_1', 32, 20],
      [6, 'Q5_0', 32, 22],
      [7, 'Q5_1', 32, 24],
      [8, 'Q8_0', 32, 34],
      [9, 'Q8_1', 32, 36],
      [10, 'Q2_K', 256, 84],
      [11, 'Q3_K', 256, 110],
      [12, 'Q4_K', 256, 144],
      [13, 'Q5_K', 256, 176],
      [14, 'Q6_K', 256, 210],
      [15, 'Q8_K', 256, 292],
      [16, 'IQ2_XXS', 256, 66],
      [17, 'IQ2_XS', 256, 74],
      [18, 'IQ3_XXS', 256, 98],
      [19, 'IQ1_S', 256, 50],
      [20, 'IQ4_NL', 32, 18],
      [21, 'IQ3_S', 256, 110],
      [22, 'IQ2_S', 256, 82],
      [23, 'IQ4_XS', 256, 136],
      [24, 'I8', 1, 1],
      [25, 'I16', 1, 2],
      [26, 'I32', 1, 4],
      [27, 'I64', 1, 8],
      [28, 'F64', 1, 8],
      [29, 'IQ1_M', 256, 56],
      [30, 'BF16', 1, 2],
      [34, 'TQ1_0', 256, 54],
      [35, 'TQ2_0', 256, 66],
      [39, 'MXFP4', 32, 17],
      [40, 'NVFP4', 64, 36],
      [41, 'Q1_0', 128, 18],
      [42, 'Q2_0', 64, 18],
    ] as const
  ).map(([id, name, blockSize, typeSize]) => [id, { name, blockSize, typeSize }]),
);

/** Bytes a tensor of `type` with dims `ne` (innermost first) occupies; throws if a row is not whole blocks. */
export function ggmlTensorBytes(type: number, ne: readonly number[]): number {
  const info = GGML_TYPE_INFO.get(type);
  if (!info) throw new RangeError(`unknown ggml type ${type}`);
  const n0 = ne.length > 0 ? ne[0]! : 1;
  if (n0 % info.blockSize !== 0) {
    throw new RangeError(`row length ${n0} is not a multiple of the ${info.name} block size ${info.blockSize}`);
  }
  let rows = 1;
  for (let i = 1; i < ne.length; i++) rows *= ne[i]!;
  return (n0 / info.blockSize) * info.typeSize * rows;
}

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Values a KV pair may hold; u64/i64 come back from the reader as bigint. */
export type GgufScalar = number | bigint | boolean | string;

/** One metadata KV pair; for ARRAY `itemType` names the element type (arrays of arrays are not allowed by ggml). */
export type GgufKv =
  | { key: string; type: Exclude<GgufValueType, GgufValueType.ARRAY>; value: GgufScalar }
  | { key: string; type: GgufValueType.ARRAY; itemType: Exclude<GgufValueType, GgufValueType.ARRAY>; value: ArrayLike<GgufScalar> };

/** Tensor header entry: `ne` is innermost-first like ggml (a matmul weight is [n_in, n_out]). */
export interface GgufTensorInfo {
  name: string;
  ne: number[];
  type: number;
  /** Offset from the start of the data section, bytes (a multiple of the alignment). */
  offset: number;
  /** Unpadded size in bytes. */
  bytes: number;
}
