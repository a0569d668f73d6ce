// Copies a GGUF with a few metadata values or tensor shapes changed (a "valid-looking file with one bad
// value"), for tests of the metadata gate and the loaders' own checks.
import fs from 'node:fs';
import { readGgufMetadata } from '../../lib/gguf/reader.js';
import { ggmlTensorBytes, GgufValueType, type GgufKv } from '../../lib/gguf/types.js';
import { writeGguf } from '../../lib/gguf/writer.js';

export interface GgufEdits {
  /** New value per key (same type as before unless `type` is given); null deletes the key. */
  kv?: Record<string, { value: GgufKv['value']; type?: GgufValueType; itemType?: GgufValueType } | number | string | null>;
  /** New ne per tensor (data becomes zeros of the new size); null deletes the tensor. */
  shapes?: Record<string, number[] | null>;
  /** New ggml type id per tensor (data becomes zeros of the new size). */
  types?: Record<string, number>;
}

export async function editGguf(src: string, dst: string, edits: GgufEdits): Promise<string> {
  const meta = await readGgufMetadata(src);
  const file = fs.readFileSync(src);
  const kv: GgufKv[] = [];
  const pending = new Map(Object.entries(edits.kv ?? {}));
  for (const e of meta.kv) {
    if (!pending.has(e.key)) {
      kv.push(e);
      continue;
    }
    const edit = pending.get(e.key)!;
    pending.delete(e.key);
    if (edit === null) continue;
    kv.push((typeof edit === 'object' ? { ...e, ...edit } : { ...e, value: edit }) as GgufKv);
  }
  for (const [key, edit] of pending) {
    if (edit === null) continue;
    const added = typeof edit === 'object' ? edit : { value: edit, type: typeof edit === 'string' ? GgufValueType.STRING : GgufValueType.UINT32 };
    kv.push({ key, type: GgufValueType.UINT32, ...added } as GgufKv);
  }
  const shapes = edits.shapes ?? {};
  const types = edits.types ?? {};
  const tensors = meta.tensors.flatMap((t) => {
    if (!(t.name in shapes) && !(t.name in types)) {
      const bytes = file.subarray(meta.dataOffset + t.offset, meta.dataOffset + t.offset + t.bytes);
      return [{ name: t.name, ne: t.ne, type: t.type, data: () => [bytes] }];
    }
    const ne = t.name in shapes ? shapes[t.name] : t.ne;
    if (ne === null) return [];
    const type = types[t.name] ?? t.type;
    return [{ name: t.name, ne: ne!, type, data: () => [new Uint8Array(ggmlTensorBytes(type, ne!))] }];
  });
  await writeGguf(dst, kv, tensors);
  return dst;
}
