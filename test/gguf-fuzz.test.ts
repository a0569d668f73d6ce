// A seeded mutation fuzzer over valid created files (a small llama, a qwen2 and an adapter): flipped bytes,
// truncations, enlarged counts and lengths, edge values in KVs and tensor infos. The reader and the metadata
// gate must accept each case or throw a typed W2sError, fast and without allocating more than the file
// justifies; every case that passes the gate is then handed to llama.cpp in one child process, which must
// end every load in success or a typed error (never an abort).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { W2sError } from '../lib/errors.js';
import { GgufFormatError, parseGgufMetadata, readGgufMetadata, type GgufMetadata } from '../lib/gguf/reader.js';
import { GGUF_SCALAR_SIZE, GgufValueType } from '../lib/gguf/types.js';
import { checkGgufMetadata } from '../lib/model/check.js';
import { describeChildEnd, runLoadChild, type ChildCase } from './helpers/child-runner.js';
import { writeRandomLora } from './helpers/lora.js';
import { TMP, tinyModel } from './helpers/models.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** mulberry32: a seeded uniform in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type FieldKind = 'count' | 'strlen' | 'type' | 'scalar' | 'arrlen' | 'dims' | 'ne' | 'ttype' | 'offset';
interface Field {
  kind: FieldKind;
  at: number;
  /** Bytes of the field (4 or 8 for integers; the scalar's size for values). */
  size: number;
  /** For 'scalar': its GGUF type. */
  type?: GgufValueType;
  what: string;
}

/** Byte offsets of every header field, walked with the sizes the reader's metadata gives (the file is valid). */
function headerFields(meta: GgufMetadata): { fields: Field[]; end: number } {
  const f: Field[] = [
    { kind: 'count', at: 8, size: 8, what: 'tensor count' },
    { kind: 'count', at: 16, size: 8, what: 'KV count' },
  ];
  let at = 24;
  const str = (s: string, what: string) => {
    f.push({ kind: 'strlen', at, size: 8, what });
    at += 8 + Buffer.byteLength(s);
  };
  for (const e of meta.kv) {
    str(e.key, `key ${e.key}`);
    f.push({ kind: 'type', at, size: 4, what: `type of ${e.key}` });
    at += 4;
    if (e.type === GgufValueType.ARRAY) {
      f.push({ kind: 'type', at, size: 4, what: `item type of ${e.key}` });
      f.push({ kind: 'arrlen', at: at + 4, size: 8, what: `length of ${e.key}` });
      at += 12;
      const items = Array.from(e.value);
      if (e.itemType === GgufValueType.STRING) items.forEach((s, i) => (i < 3 || i === items.length - 1 ? str(s as string, `${e.key}[${i}]`) : (at += 8 + Buffer.byteLength(s as string))));
      else {
        const size = GGUF_SCALAR_SIZE[e.itemType];
        if (items.length > 0) f.push({ kind: 'scalar', at, size, type: e.itemType, what: `${e.key}[0]` });
        at += size * items.length;
      }
    } else if (e.type === GgufValueType.STRING) {
      str(e.value as string, `value of ${e.key}`);
    } else {
      f.push({ kind: 'scalar', at, size: GGUF_SCALAR_SIZE[e.type], type: e.type, what: `value of ${e.key}` });
      at += GGUF_SCALAR_SIZE[e.type];
    }
  }
  for (const t of meta.tensors) {
    str(t.name, `name of ${t.name}`);
    f.push({ kind: 'dims', at, size: 4, what: `dims of ${t.name}` });
    at += 4;
    t.ne.forEach((_, d) => f.push({ kind: 'ne', at: at + 8 * d, size: 8, what: `ne[${d}] of ${t.name}` }));
    at += 8 * t.ne.length;
    f.push({ kind: 'ttype', at, size: 4, what: `type of ${t.name}` });
    f.push({ kind: 'offset', at: at + 4, size: 8, what: `offset of ${t.name}` });
    at += 12;
  }
  return { fields: f, end: at };
}

const INTS = [0n, 1n, 2n, 3n, 7n, 16n, 17n, 255n, 513n, 1000n, 65535n, 1n << 31n, (1n << 32n) - 1n, 1n << 32n, (1n << 63n) - 1n, (1n << 64n) - 1n];
const FLOATS = [0, -1, Number.NaN, Infinity, -Infinity, 1e-30, 1, 2, 1e30];

interface Case {
  id: string;
  seed: 'llama' | 'qwen2' | 'adapter';
  bytes: Uint8Array;
}

function mutate(file: Uint8Array, fields: Field[], dataOffset: number, r: () => number, id: string, seed: Case['seed']): Case {
  const b = file.slice();
  const dv = new DataView(b.buffer);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const setInt = (at: number, size: number, v: bigint) => {
    if (size === 8) dv.setBigUint64(at, BigInt.asUintN(64, v), true);
    else if (size === 4) dv.setUint32(at, Number(BigInt.asUintN(32, v)), true);
    else if (size === 2) dv.setUint16(at, Number(BigInt.asUintN(16, v)), true);
    else dv.setUint8(at, Number(BigInt.asUintN(8, v)));
  };
  const getInt = (at: number, size: number): bigint => (size === 8 ? dv.getBigUint64(at, true) : size === 4 ? BigInt(dv.getUint32(at, true)) : size === 2 ? BigInt(dv.getUint16(at, true)) : BigInt(dv.getUint8(at)));
  const kind = pick(['flip', 'flip', 'truncate', 'enlarge', 'enlarge', 'value', 'value', 'value', 'tensor', 'data'] as const);
  let what: string = kind;
  switch (kind) {
    case 'flip': {
      const k = 1 + Math.floor(r() * 4);
      for (let i = 0; i < k; i++) b[Math.floor(r() * dataOffset)] = Math.floor(r() * 256);
      break;
    }
    case 'truncate': {
      const n = r() < 0.5 ? Math.floor(r() * dataOffset) : Math.floor(r() * file.length);
      return { id: `${id} truncate to ${n}`, seed, bytes: b.subarray(0, n) };
    }
    case 'enlarge': {
      const f = pick(fields.filter((x) => x.kind === 'count' || x.kind === 'strlen' || x.kind === 'arrlen'));
      const old = getInt(f.at, f.size);
      const v = pick([old + 1n, old + 7n, old * 2n + 1n, old + 4096n, 1n << 31n, 1n << 40n, (1n << 63n) - 1n, (1n << 64n) - 1n]);
      setInt(f.at, f.size, v);
      what = `${f.what} ${old} -> ${v}`;
      break;
    }
    case 'value': {
      const f = pick(fields.filter((x) => x.kind === 'scalar'));
      if (f.type === GgufValueType.FLOAT32 || f.type === GgufValueType.FLOAT64) {
        const v = pick(FLOATS);
        if (f.size === 4) dv.setFloat32(f.at, v, true);
        else dv.setFloat64(f.at, v, true);
        what = `${f.what} = ${v}`;
      } else {
        const v = pick(INTS);
        setInt(f.at, f.size, v);
        what = `${f.what} = ${BigInt.asUintN(f.size * 8, v)}`;
      }
      break;
    }
    case 'tensor': {
      const f = pick(fields.filter((x) => x.kind === 'dims' || x.kind === 'ne' || x.kind === 'ttype' || x.kind === 'offset' || x.kind === 'type'));
      const v = f.kind === 'ttype' || f.kind === 'type' ? BigInt(Math.floor(r() * 44)) : pick(INTS);
      setInt(f.at, f.size, v);
      what = `${f.what} = ${v}`;
      break;
    }
    case 'data': {
      for (let i = 0; i < 8; i++) b[dataOffset + Math.floor(r() * (file.length - dataOffset))] = 0xff; // NaN-ish weights
      break;
    }
  }
  return { id: `${id} ${what}`, seed, bytes: b };
}

// 3 × 170 cases by default; W2S_FUZZ_CASES and W2S_FUZZ_SEED widen or move the search when exploring.
const CASES_PER_SEED = Number(process.env.W2S_FUZZ_CASES ?? 170);
const SEED = Number(process.env.W2S_FUZZ_SEED ?? 0);

test('mutated GGUFs: the reader and the gate give a result or a typed error, fast and small; llama.cpp never aborts on what passes', async (t) => {
  const llama = await tinyModel({ type: 'f16' });
  const qwen2 = await tinyModel({ arch: 'qwen2', type: 'f16' });
  const adapter = await writeRandomLora(llama, path.join(TMP, 'fuzz.lora.gguf'), { targets: { 0: ['attn_q', 'ffn_down'], 1: ['attn_v'] }, output: true });
  const seeds = [['llama', llama], ['qwen2', qwen2], ['adapter', adapter]] as const;
  const counts = { cases: 0, reader: 0, gate: 0, passed: 0, loaded: 0, llamaTyped: 0 };
  const refusals = new Map<string, number>();
  const toLoad: ChildCase[] = [];
  const problems: string[] = [];
  let slowest = { ms: 0, id: '' };
  let biggest = { ratio: 0, id: '' };
  const t0 = performance.now();
  for (const [name, file] of seeds) {
    const bytes = new Uint8Array(fs.readFileSync(file));
    const meta = await readGgufMetadata(file);
    const { fields, end } = headerFields(meta);
    t.true(end <= meta.dataOffset && meta.dataOffset - end < meta.alignment, `walked ${name}'s header to its end`);
    const r = rng(SEED * 3 + (name === 'llama' ? 1 : name === 'qwen2' ? 2 : 3));
    for (let i = 0; i < CASES_PER_SEED; i++) {
      const c = mutate(bytes, fields, meta.dataOffset, r, `${name}#${i}`, name);
      counts.cases++;
      gc();
      const before = process.memoryUsage();
      const start = performance.now();
      let stage: 'reader' | 'gate' | 'passed' = 'reader';
      try {
        const m = await parseGgufMetadata(c.bytes);
        stage = 'gate';
        checkGgufMetadata(m, c.id, name === 'adapter' ? 'adapter' : 'model');
        stage = 'passed';
      } catch (err) {
        if (!(err instanceof W2sError) || (stage === 'reader') !== err instanceof GgufFormatError) {
          problems.push(`${c.id}: ${stage} threw ${String(err)}`);
        } else {
          const key = `${stage}: ${err.constructor.name}`;
          refusals.set(key, (refusals.get(key) ?? 0) + 1);
        }
      }
      const ms = performance.now() - start;
      const after = process.memoryUsage();
      const grown = after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers;
      if (ms > slowest.ms) slowest = { ms, id: c.id };
      const ratio = grown / c.bytes.length;
      if (ratio > biggest.ratio) biggest = { ratio, id: c.id };
      if (ms > 2000) problems.push(`${c.id}: took ${ms.toFixed(0)} ms`);
      // The reader keeps what it parsed (strings, arrays of JS values): a few times the header, never more.
      if (grown > 16 * c.bytes.length + (32 << 20)) problems.push(`${c.id}: grew the heap by ${grown} bytes for a ${c.bytes.length}-byte file`);
      counts[stage]++;
      if (stage === 'passed') {
        const out = path.join(TMP, `fuzz-${counts.cases}.gguf`);
        fs.writeFileSync(out, c.bytes);
        // The trainer reads the same files with its own loader (native/core/train_model.cpp, lora.cpp).
        if (name === 'adapter') toLoad.push({ id: c.id, action: 'lora', model: llama, lora: out }, { id: `${c.id} / train`, action: 'native-train', model: llama, lora: out });
        else toLoad.push({ id: c.id, action: 'score', model: out }, { id: `${c.id} / train`, action: 'native-train', model: out });
      }
    }
  }
  const gateMs = performance.now() - t0;
  const run = await runLoadChild(toLoad, TMP, 180_000);
  t.is(run.code, 0, describeChildEnd(run));
  for (const c of toLoad) {
    const res = run.results.get(c.id);
    if (!res) problems.push(`${c.id}: no result from llama.cpp`);
    else if (res.ok) counts.loaded++;
    else if (res.typed) counts.llamaTyped++;
    else problems.push(`${c.id}: llama.cpp gave an untyped ${res.name}: ${res.message}`);
  }
  t.log(`${counts.cases} cases: ${counts.reader} refused by the reader, ${counts.gate} by the gate, ${counts.passed} passed; of ${toLoad.length} loads of those (llama.cpp and the trainer) ${counts.loaded} ran, ${counts.llamaTyped} ended in typed errors`);
  t.log(`refusals ${JSON.stringify(Object.fromEntries(refusals))}`);
  t.log(`reader + gate ${(gateMs / 1000).toFixed(1)} s (slowest case ${slowest.ms.toFixed(0)} ms: ${slowest.id}; largest growth ${biggest.ratio.toFixed(2)}× the file: ${biggest.id}); llama.cpp child ${(run.ms / 1000).toFixed(1)} s`);
  t.deepEqual(problems, []);
  t.true(counts.reader > 0 && counts.gate > 0 && counts.loaded > 0, 'the mutations reach every stage');
});
