// Tests for lib/gguf: f16/q8_0/q4_0 encoders against ggml's formulas and golden bytes, writer -> reader
// round trips (every KV type, tensor infos, offsets, data), and typed errors for bad files.

import test from 'ava';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode, fp16ToFp32, fp32ToFp16 } from '../lib/gguf/quantize.js';
import { GgufFormatError, parseGgufMetadata, readGgufMetadata, type GgufFormatErrorReason } from '../lib/gguf/reader.js';
import { GgmlType, GgufValueType, type GgufKv } from '../lib/gguf/types.js';
import { encodeGgufHeader, writeGguf, type GgufTensorSource } from '../lib/gguf/writer.js';

const fround = Math.fround;

/** Deterministic floats: a mix of ordinary, tiny, huge, zero and exactly-tied blocks of 32. */
function sampleValues(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  for (let i = 0; i < n; i++) {
    const kind = Math.floor(i / 32) % 6;
    const u = rnd() * 2 - 1;
    out[i] = kind === 0 ? u : kind === 1 ? u * 1e-5 : kind === 2 ? u * 3e3 : kind === 3 ? 0 : kind === 4 ? Math.round(u * 16) / 16 : u * 0.02;
  }
  return out;
}

/** The 128 inputs behind the golden bytes below (computed with gguf-py's numpy port of ggml-quants.c). */
function goldenInput(): Float32Array {
  const x = new Float32Array(128);
  for (let i = 0; i < 128; i++) {
    const b = Math.floor(i / 32);
    const j = i % 32;
    x[i] = b === 0 ? (((j * 37) % 64) - 32) / 8 : b === 1 ? (j - 15.5) * 0.001 : b === 2 ? 0 : j === 3 ? -1 : j === 20 ? 1 : (j - 16) / 17;
  }
  return x;
}

const GOLDEN_Q8_0 =
  '08288114a93cd063f88d20b547dc6f04992cc053e87b10a538cc5ff4891cb143d86b00088189919aa2aab2bac3cbd3dbe3ecf4fc040c141d252d353d464e565e666f777f' +
  '00000000000000000000000000000000000000000000000000000000000000000000082088909781a6aeb5bdc4ccd3dbe2eaf1f900070f167f252d343c434b525a616970';
const GOLDEN_Q4_0 =
  '003840d973fc952ec851ea731da63fc862fbf017809191a2a2b3b3c4c4d5d5e6e6f7f7f8008088888888888888888888888888888888003080819190f2a3b3b4c4c5d5d6e6e7f7f8';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('q8_0 and q4_0 bytes match ggml reference golden vectors (incl. ties, zero block, sign-preserving max)', (t) => {
  const x = goldenInput();
  t.is(hex(encode(GgmlType.Q8_0, x)), GOLDEN_Q8_0);
  t.is(hex(encode(GgmlType.Q4_0, x)), GOLDEN_Q4_0);
});

test('fp32ToFp16 is round-to-nearest-even over all halves, with ggml overflow/NaN handling', (t) => {
  // Independent reference: every finite half, sorted; nearest wins, ties go to the even mantissa.
  const halves: { v: number; h: number }[] = [];
  for (let h = 0; h < 0x7c00; h++) halves.push({ v: fp16ToFp32(h), h });
  let maxRel = 0;
  let checked = 0;
  const probe = (x: number) => {
    const ax = Math.abs(fround(x));
    const got = fp32ToFp16(x);
    let expected: number;
    if (ax >= 65520) expected = 0x7c00; // rounds past the largest half (65504) -> inf
    else {
      let lo = 0;
      let hi = halves.length - 1;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (halves[mid]!.v <= ax) lo = mid;
        else hi = mid;
      }
      const a = halves[lo]!;
      const b = halves[hi]!;
      const da = ax - a.v;
      const db = b.v - ax;
      expected = da < db ? a.h : db < da ? b.h : a.h % 2 === 0 ? a.h : b.h;
      if (ax >= 6.103515625e-5) maxRel = Math.max(maxRel, Math.abs(fp16ToFp32(got & 0x7fff) - ax) / ax);
    }
    if (fround(x) < 0 || Object.is(fround(x), -0)) expected |= 0x8000;
    checked++;
    return got === expected;
  };
  const failures: number[] = [];
  for (let h = 0; h < 0x7c00; h++) {
    const v = fp16ToFp32(h);
    const next = fp16ToFp32(h + 1);
    // the half itself, the exact midpoint to the next half, and values just either side of it
    for (const x of [v, -v, (v + next) / 2, fround((v + next) / 2) * (1 + 2 ** -20), fround((v + next) / 2) * (1 - 2 ** -20)]) {
      if (!probe(x) && failures.length < 5) failures.push(x);
    }
  }
  for (const x of sampleValues(4096)) if (!probe(x) && failures.length < 5) failures.push(x);
  t.log(`checked ${checked} values, max relative error on normals ${maxRel.toExponential(3)} (bound 2^-11 = ${(2 ** -11).toExponential(3)})`);
  t.deepEqual(failures, []);
  t.true(maxRel <= 2 ** -11);
  t.is(fp32ToFp16(Infinity), 0x7c00);
  t.is(fp32ToFp16(-Infinity), 0xfc00);
  t.is(fp32ToFp16(NaN) & 0x7fff, 0x7e00);
  t.is(fp32ToFp16(1e9), 0x7c00);
});

test('f16 round trip error is within half an f16 ulp', (t) => {
  const x = sampleValues(32 * 600);
  const y = decode(GgmlType.F16, encode(GgmlType.F16, x), x.length);
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const ax = Math.abs(x[i]!);
    // ulp of a half near ax: 2^(e-10) for normals, 2^-24 for subnormals
    const ulp = ax < 6.103515625e-5 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(ax)) - 10);
    worst = Math.max(worst, Math.abs(y[i]! - x[i]!) / ulp);
  }
  t.log(`f16 max |error| / ulp = ${worst.toFixed(4)}`);
  t.true(worst <= 0.5 + 1e-9);
});

test('q8_0 round trip: error <= d/2 per element plus the f16 rounding of d', (t) => {
  const x = sampleValues(32 * 600);
  const bytes = encode(GgmlType.Q8_0, x);
  t.is(bytes.length, (x.length / 32) * 34);
  const y = decode(GgmlType.Q8_0, bytes, x.length);
  let worstRatio = 0;
  let maxAbs = 0;
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const d = fround(amax / 127);
    const d16 = fp16ToFp32(fp32ToFp16(d)); // the stored scale
    t.is(d16, fp16ToFp32(bytes[b * 34]! | (bytes[b * 34 + 1]! << 8)));
    for (let j = 0; j < 32; j++) {
      const i = b * 32 + j;
      const q = (bytes[b * 34 + 2 + j]! << 24) >> 24;
      t.true(Math.abs(q) <= 127);
      t.is(y[i], q * d16); // dequantize_row_q8_0: y = q * d
      const err = Math.abs(y[i]! - x[i]!);
      maxAbs = Math.max(maxAbs, err);
      const bound = 0.5 * d + 127 * Math.abs(d16 - d) + 1e-7 * d;
      if (bound > 0) worstRatio = Math.max(worstRatio, err / bound);
      else t.is(err, 0);
    }
  }
  t.log(`q8_0 max |x - deq(q(x))| = ${maxAbs.toExponential(3)}, worst error / bound = ${worstRatio.toFixed(4)}`);
  t.true(worstRatio <= 1);
});

test('q4_0 round trip: nibble layout, d = max/-8 and error bounds', (t) => {
  const x = sampleValues(32 * 600);
  const bytes = encode(GgmlType.Q4_0, x);
  t.is(bytes.length, (x.length / 32) * 18);
  const y = decode(GgmlType.Q4_0, bytes, x.length);
  let worstRatio = 0;
  let maxAbs = 0;
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = max / -8; // exact in f32
    const d16 = fp16ToFp32(bytes[b * 18]! | (bytes[b * 18 + 1]! << 8));
    t.is(d16, fp16ToFp32(fp32ToFp16(d)));
    for (let j = 0; j < 32; j++) {
      const i = b * 32 + j;
      // low nibble of byte j holds element j, high nibble holds element j + 16
      const byte = bytes[b * 18 + 2 + (j % 16)]!;
      const q = j < 16 ? byte & 15 : byte >> 4;
      t.is(y[i], (q - 8) * d16);
      const err = Math.abs(y[i]! - x[i]!);
      maxAbs = Math.max(maxAbs, err);
      // x/d reaches +8 only on the side opposite the max, where q clips to 15: error up to |d|
      const clipped = d !== 0 && x[i]! / d > 7.5;
      const bound = (clipped ? 1 : 0.5) * Math.abs(d) + 8 * Math.abs(d16 - d) + 1e-6 * Math.abs(d);
      if (bound > 0) worstRatio = Math.max(worstRatio, err / bound);
      else t.is(err, 0);
    }
    // the element holding the signed max always maps to q = 0 -> exactly -8 * d
    if (amax > 0) t.true(Math.abs(y[b * 32 + [...x.subarray(b * 32, b * 32 + 32)].indexOf(max)]! - max) <= 8 * Math.abs(d16 - d) + 1e-12);
  }
  t.log(`q4_0 max |x - deq(q(x))| = ${maxAbs.toExponential(3)}, worst error / bound = ${worstRatio.toFixed(4)}`);
  t.true(worstRatio <= 1);
});

test('quantizers reject partial blocks', (t) => {
  t.throws(() => encode(GgmlType.Q8_0, new Float32Array(33)), { instanceOf: RangeError });
  t.throws(() => encode(GgmlType.Q4_0, new Float32Array(31)), { instanceOf: RangeError });
});

// --- writer / reader ---------------------------------------------------------------------------

const ALL_KV: GgufKv[] = [
  { key: 'general.architecture', type: GgufValueType.STRING, value: 'llama' },
  { key: 't.u8', type: GgufValueType.UINT8, value: 255 },
  { key: 't.i8', type: GgufValueType.INT8, value: -128 },
  { key: 't.u16', type: GgufValueType.UINT16, value: 65535 },
  { key: 't.i16', type: GgufValueType.INT16, value: -32768 },
  { key: 't.u32', type: GgufValueType.UINT32, value: 4294967295 },
  { key: 't.i32', type: GgufValueType.INT32, value: -2147483648 },
  { key: 't.f32', type: GgufValueType.FLOAT32, value: fround(0.1) },
  { key: 't.bool', type: GgufValueType.BOOL, value: true },
  { key: 't.str', type: GgufValueType.STRING, value: 'héllo ▁wörld 🙂\n' },
  { key: 't.u64', type: GgufValueType.UINT64, value: 18446744073709551615n },
  { key: 't.i64', type: GgufValueType.INT64, value: -9223372036854775808n },
  { key: 't.f64', type: GgufValueType.FLOAT64, value: Math.PI },
  { key: 't.empty', type: GgufValueType.STRING, value: '' },
  { key: 't.arr.str', type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: ['<unk>', '', '▁the', '🙂'] },
  { key: 't.arr.i32', type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value: [1, -2, 3, 2147483647] },
  { key: 't.arr.u8', type: GgufValueType.ARRAY, itemType: GgufValueType.UINT8, value: [0, 1, 255] },
  { key: 't.arr.f32', type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32, value: [fround(-1.5), 0, fround(1e-3)] },
  { key: 't.arr.f64', type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT64, value: [1 / 3] },
  { key: 't.arr.bool', type: GgufValueType.ARRAY, itemType: GgufValueType.BOOL, value: [true, false] },
  { key: 't.arr.u64', type: GgufValueType.ARRAY, itemType: GgufValueType.UINT64, value: [0n, 2n ** 40n] },
  { key: 't.arr.empty', type: GgufValueType.ARRAY, itemType: GgufValueType.INT16, value: [] },
];

interface TestTensor {
  name: string;
  ne: number[];
  type: GgmlType;
  values: Float32Array;
  bytes: Uint8Array;
}

function testTensors(): TestTensor[] {
  const specs: [string, number[], GgmlType][] = [
    ['norm.weight', [7], GgmlType.F32], // 28 bytes: forces padding
    ['a.weight', [64, 3], GgmlType.F16],
    ['b.weight', [32, 5], GgmlType.Q8_0],
    ['c.weight', [64, 2, 3], GgmlType.Q4_0],
    ['empty.weight', [0], GgmlType.F32],
    ['d.weight', [32, 1, 1, 2], GgmlType.F32],
  ];
  return specs.map(([name, ne, type], k) => {
    const values = sampleValues(ne.reduce((a, b) => a * b, 1), k + 7);
    return { name, ne, type, values, bytes: encode(type, values) };
  });
}

function sources(tensors: TestTensor[]): GgufTensorSource[] {
  return tensors.map((tt) => ({
    name: tt.name,
    ne: tt.ne,
    type: tt.type,
    *data() {
      // odd-sized chunks to exercise the writer's buffering
      for (let at = 0; at < tt.bytes.length; at += 13) yield tt.bytes.subarray(at, Math.min(at + 13, tt.bytes.length));
    },
  }));
}

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'w2s-gguf-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

for (const alignment of [undefined, 64]) {
  test(`writer -> reader round trip: all KV types, tensor infos, offsets, data (alignment ${alignment ?? 'default'})`, async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'all.gguf');
    const kv: GgufKv[] = alignment ? [...ALL_KV, { key: 'general.alignment', type: GgufValueType.UINT32, value: alignment }] : ALL_KV;
    const tensors = testTensors();
    const written = await writeGguf(path, kv, sources(tensors));
    const file = await readFile(path);
    t.is(written.bytes, file.length);

    const md = await readGgufMetadata(path);
    const align = alignment ?? 32;
    t.is(md.version, 3);
    t.is(md.alignment, align);
    t.is(md.fileSize, file.length);
    t.is(md.dataOffset % align, 0);
    t.is(md.dataOffset, written.dataOffset);
    t.deepEqual(md.kv.map((e) => e.key), kv.map((e) => e.key));
    for (const e of kv) {
      const got = md.kv.find((g) => g.key === e.key)!;
      t.is(got.type, e.type, e.key);
      if (e.type === GgufValueType.ARRAY && got.type === GgufValueType.ARRAY) {
        t.is(got.itemType, e.itemType, e.key);
        t.deepEqual(Array.from(got.value), Array.from(e.value), e.key);
      } else t.deepEqual(got.value, e.value, e.key);
    }
    t.is(md.values.get('t.str'), 'héllo ▁wörld 🙂\n');

    t.is(md.tensors.length, tensors.length);
    let expectedOffset = 0;
    for (let i = 0; i < tensors.length; i++) {
      const info = md.tensors[i]!;
      const tt = tensors[i]!;
      t.is(info.name, tt.name);
      t.deepEqual(info.ne, tt.ne);
      t.is(info.type, tt.type);
      t.is(info.bytes, tt.bytes.length);
      t.is(info.offset, expectedOffset);
      t.is(info.offset % align, 0);
      expectedOffset += Math.ceil(info.bytes / align) * align;
      const stored = file.subarray(md.dataOffset + info.offset, md.dataOffset + info.offset + info.bytes);
      t.is(hex(stored), hex(tt.bytes), `${tt.name} data`);
      const back = decode(tt.type, stored, tt.values.length);
      let maxDiff = 0;
      let amax = 0;
      for (let j = 0; j < back.length; j++) {
        maxDiff = Math.max(maxDiff, Math.abs(back[j]! - tt.values[j]!));
        amax = Math.max(amax, Math.abs(tt.values[j]!));
      }
      // f32 is exact; f16/q8_0/q4_0 stay within 1/8 of the tensor's largest magnitude (q4_0's worst case is d = amax/8)
      if (tt.type === GgmlType.F32) t.is(maxDiff, 0);
      else t.true(maxDiff <= amax * 0.126, `${tt.name} max diff ${maxDiff} vs amax ${amax}`);
      // padding bytes are zero
      const padEnd = md.dataOffset + Math.ceil((info.offset + info.bytes) / align) * align;
      t.true(file.subarray(md.dataOffset + info.offset + info.bytes, padEnd).every((b) => b === 0));
    }
    t.is(md.dataSize, expectedOffset);
    t.is(file.length, md.dataOffset + md.dataSize);

    const fromBuffer = await parseGgufMetadata(file);
    t.deepEqual(fromBuffer.tensors, md.tensors);
    t.deepEqual([...fromBuffer.values.keys()], [...md.values.keys()]);
  });
}

test('writer rejects bad input and leaves no temp file or partial output', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'bad.gguf');
  await writeFile(path, 'previous contents');
  const short: GgufTensorSource = { name: 'x', ne: [32], type: GgmlType.F32, *data() { yield new Uint8Array(100); } };
  await t.throwsAsync(writeGguf(path, [], [short]), { message: /produced 100 bytes, expected 128/ });
  const long: GgufTensorSource = { name: 'x', ne: [8], type: GgmlType.F32, *data() { yield new Uint8Array(40); } };
  await t.throwsAsync(writeGguf(path, [], [long]), { message: /more than its 32 bytes/ });
  t.deepEqual(await readdir(dir), ['bad.gguf']);
  t.is(await readFile(path, 'utf8'), 'previous contents');

  const dupKey: GgufKv[] = [ALL_KV[0]!, ALL_KV[0]!];
  t.throws(() => encodeGgufHeader(dupKey, []), { message: /duplicate GGUF key/ });
  t.throws(() => encodeGgufHeader([{ key: 'k', type: GgufValueType.UINT8, value: 256 }], []), { instanceOf: RangeError });
  t.throws(() => encodeGgufHeader([{ key: 'k', type: GgufValueType.INT32, value: 1.5 }], []), { instanceOf: RangeError });
  t.throws(() => encodeGgufHeader([{ key: 'general.alignment', type: GgufValueType.UINT32, value: 48 }], []), { message: /power of two/ });
  t.throws(() => encodeGgufHeader([], [{ name: 'q', ne: [48, 2], type: GgmlType.Q8_0 }]), { message: /multiple of the Q8_0 block size/ });
  t.throws(() => encodeGgufHeader([], [{ name: 'n'.repeat(64), ne: [1], type: GgmlType.F32 }]), { message: /64 bytes or longer/ });
});

// --- reader errors -------------------------------------------------------------------------------

async function expectFormatError(t: import('ava').ExecutionContext, data: Uint8Array, reason: GgufFormatErrorReason, dir: string, label: string) {
  const path = join(dir, `${label}.bin`);
  await writeFile(path, data);
  const err = await t.throwsAsync(readGgufMetadata(path), { instanceOf: GgufFormatError }, label);
  t.is(err?.code, 'ERR_W2S_GGUF_FORMAT');
  t.is(err?.reason, reason, `${label}: ${err?.message}`);
  t.true(err?.message.startsWith(path), label);
}

test('reader throws typed errors for empty, non-GGUF, wrong-version and truncated files', async (t) => {
  const dir = await tempDir(t);
  const good = join(dir, 'good.gguf');
  await writeGguf(good, ALL_KV, sources(testTensors()));
  const file = new Uint8Array(await readFile(good));
  const md = await readGgufMetadata(good);

  await expectFormatError(t, new Uint8Array(0), 'not-gguf', dir, 'empty');
  await expectFormatError(t, new Uint8Array([0x47, 0x47]), 'not-gguf', dir, 'two-bytes');
  await expectFormatError(t, Buffer.from('{"this": "is json, not gguf"}\n'), 'not-gguf', dir, 'json');
  await expectFormatError(t, Buffer.from('GGUF'), 'truncated', dir, 'magic-only');
  const v1 = file.slice();
  new DataView(v1.buffer).setUint32(4, 1, true);
  await expectFormatError(t, v1, 'unsupported-version', dir, 'v1');
  const v4 = file.slice();
  new DataView(v4.buffer).setUint32(4, 4, true);
  await expectFormatError(t, v4, 'unsupported-version', dir, 'v4');
  const bigEndian = file.slice();
  new DataView(bigEndian.buffer).setUint32(4, 3, false);
  await expectFormatError(t, bigEndian, 'unsupported-version', dir, 'big-endian');
  // cut inside the header, right before the data section, and inside the last tensor's data
  await expectFormatError(t, file.subarray(0, 100), 'truncated', dir, 'cut-kv');
  await expectFormatError(t, file.subarray(0, md.dataOffset - 1), 'truncated', dir, 'cut-before-data');
  await expectFormatError(t, file.subarray(0, file.length - 40), 'truncated', dir, 'cut-data');
  const badOffset = file.slice();
  // first tensor info: name, n_dims u32, ne[0] i64, type i32, then its offset u64 (must be 0)
  const firstName = Buffer.from(file).indexOf(Buffer.from('norm.weight'));
  new DataView(badOffset.buffer).setBigUint64(firstName + 'norm.weight'.length + 4 + 8 + 4, 32n, true);
  await expectFormatError(t, badOffset, 'invalid', dir, 'bad-offset');
});

test('every prefix of a valid file is rejected with GgufFormatError (never a crash or other error)', async (t) => {
  const dir = await tempDir(t);
  const good = join(dir, 'good.gguf');
  await writeGguf(good, ALL_KV, sources(testTensors()));
  const file = new Uint8Array(await readFile(good));
  const last = (await parseGgufMetadata(file)).tensors.at(-1)!;
  const reasons = new Map<string, number>();
  // Prefixes at least as long as the last tensor's unpadded end are complete files (padding is optional).
  const complete = (await parseGgufMetadata(file)).dataOffset + last.offset + last.bytes;
  for (let n = 0; n < complete; n++) {
    try {
      await parseGgufMetadata(file.subarray(0, n));
      t.fail(`prefix of ${n} bytes parsed`);
      return;
    } catch (err) {
      if (!(err instanceof GgufFormatError)) {
        t.fail(`prefix of ${n} bytes threw ${String(err)}`);
        return;
      }
      reasons.set(err.reason, (reasons.get(err.reason) ?? 0) + 1);
    }
  }
  t.log(`prefixes 0..${complete - 1}: ${JSON.stringify(Object.fromEntries(reasons))}`);
  t.pass();
});

test('random header corruption yields a parse or a GgufFormatError, nothing else', async (t) => {
  const dir = await tempDir(t);
  const good = join(dir, 'good.gguf');
  await writeGguf(good, ALL_KV, sources(testTensors()));
  const file = new Uint8Array(await readFile(good));
  const { dataOffset } = await parseGgufMetadata(file);
  let s = 99;
  const rnd = (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
  let ok = 0;
  let rejected = 0;
  for (let i = 0; i < 3000; i++) {
    const copy = file.slice();
    for (let k = 0; k <= rnd(3); k++) copy[rnd(dataOffset)] = rnd(256);
    try {
      await parseGgufMetadata(copy);
      ok++;
    } catch (err) {
      if (!(err instanceof GgufFormatError)) {
        t.fail(`mutation ${i} threw ${String(err)}`);
        return;
      }
      rejected++;
    }
  }
  t.log(`3000 mutations: ${ok} still parse, ${rejected} rejected with GgufFormatError`);
  t.true(rejected > 0);
});
