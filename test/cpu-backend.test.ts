// The ggml CPU backend built for this machine (scripts/cpu-backend.mjs): which instruction sets it is compiled
// for, that the addon registers it instead of node-llama-cpp's prebuilt variants and gets their results from it
// (an independent build of the same kernels: sampling, scoring and training compared in two processes), and
// that a damaged, foreign or unloadable build is never used: the prebuilt variants run, and saying why.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PATCHES, activeKernels, cachedCpuBackend, cpuBackendPaths, ensureCpuBackend, ggmlIsaOptions, kernelSha256 } from '../scripts/cpu-backend.mjs';
import { llamaSource, toolPaths, toolPatchSha256 } from '../scripts/llama-server.mjs';
import { findPrebuiltLibDir } from '../scripts/llama-paths.mjs';
import { cpuFlags, cpuKey } from '../scripts/cache-paths.mjs';
import { runsOwnFlashKernel } from '../lib/model/attention.js';
import { packageRoot } from '../lib/native.js';
import { TMP, tinyModel } from './helpers/models.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, 'helpers', 'variant-child.js');
const BUILT_HERE = process.platform === 'linux' && process.arch === 'x64';

interface ChildResult {
  cpuBackend: { source: string; path?: string; note: string; kernels?: string[] }; loadLog: string; systemInfo: string;
  greedy: string[]; seeded: string[]; logprobs: number[]; losses: number[];
  flash: Array<{ tokenIds: number[]; logprobs: number[] }>;
  plain: Array<{ tokenIds: number[]; logprobs: number[] }>;
}

function runChild(model: string, env: Record<string, string>): { status: number | null; stderr: string; result?: ChildResult } {
  const base = { ...process.env };
  for (const k of ['W2S_GPU', 'W2S_VARIANT', 'W2S_PROCESS_VARIANT', 'W2S_ADDON_PATH', 'W2S_CPU_BACKEND']) delete base[k];
  const r = spawnSync(process.execPath, [child, model], { env: { ...base, W2S_THREAD_CALIBRATION: '0', W2S_VARIANT: 'cpu', ...env }, encoding: 'utf8', timeout: 300_000 });
  const last = r.stdout.trim().split('\n').at(-1);
  return { status: r.status, stderr: r.stderr, result: r.status === 0 && last ? JSON.parse(last) as ChildResult : undefined };
}

function mustRun(model: string, env: Record<string, string>): ChildResult {
  const r = runChild(model, env);
  if (!r.result) throw new Error(`child (${JSON.stringify(env)}) exited ${r.status}: ${r.stderr}`);
  return r.result;
}

const maxAbs = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test('the ISA options follow the CPU flags, each only with every instruction set ggml compiles it with', (t) => {
  const haswell = ['sse4_2', 'avx', 'f16c', 'fma', 'bmi2', 'avx2'];
  const avx512 = ['avx512f', 'avx512cd', 'avx512vl', 'avx512dq', 'avx512bw'];
  const on = (flags: string[]) => Object.entries(ggmlIsaOptions(flags, 'linux', 'x64')!).filter(([, v]) => v).map(([k]) => k).sort();
  t.deepEqual(on(haswell), ['AVX', 'AVX2', 'BMI2', 'F16C', 'FMA', 'SSE42']);
  t.deepEqual(on([...haswell, ...avx512, 'avx512vbmi', 'avx512_vnni', 'avx512_bf16']),
    ['AVX', 'AVX2', 'AVX512', 'AVX512_BF16', 'AVX512_VBMI', 'AVX512_VNNI', 'BMI2', 'F16C', 'FMA', 'SSE42']);
  // avx512f without avx512vl: GGML_AVX512 would emit VL instructions; and no extension without the base set.
  t.deepEqual(on([...haswell, 'avx512f', 'avx512cd', 'avx512dq', 'avx512bw', 'avx512vbmi', 'avx512_vnni']), ['AVX', 'AVX2', 'BMI2', 'F16C', 'FMA', 'SSE42']);
  // ggml's AMX code needs AVX-512 VNNI: without it, no AMX option.
  t.deepEqual(on([...haswell, 'avx_vnni', 'amx_tile', 'amx_int8']), ['AVX', 'AVX2', 'AVX_VNNI', 'BMI2', 'F16C', 'FMA', 'SSE42']);
  t.deepEqual(on([...haswell, ...avx512, 'avx512_vnni', 'amx_tile', 'amx_int8']),
    ['AMX_INT8', 'AMX_TILE', 'AVX', 'AVX2', 'AVX512', 'AVX512_VNNI', 'BMI2', 'F16C', 'FMA', 'SSE42']);
  // Our Q8_0 GEMM runs only where tinyBLAS has no VNNI path: AVX2 without AVX-VNNI or AVX-512.
  const kernels = (flags: string[]) => activeKernels(ggmlIsaOptions(flags, 'linux', 'x64')!);
  t.deepEqual(kernels(haswell), ['flash_attn_decode', 'q8_0_gemm']);
  t.deepEqual(kernels([...haswell, 'avx_vnni']), ['flash_attn_decode']);
  t.deepEqual(kernels([...haswell, ...avx512]), ['flash_attn_decode']);
  t.deepEqual(kernels(['sse4_2', 'avx']), ['flash_attn_decode'], 'listed; it declines at run time without AVX2, F16C and FMA');
  t.deepEqual(on(['sse4_2']), ['SSE42']);
  t.is(ggmlIsaOptions(haswell, 'darwin', 'x64'), undefined);
  t.is(ggmlIsaOptions(haswell, 'linux', 'arm64'), undefined);
  t.is(ggmlIsaOptions([], 'linux', 'x64'), undefined);
});

test.serial('W2S_CPU_FLAGS_OFF builds as for a lesser CPU: the flags it names are absent, and the cache key differs', (t) => {
  const before = process.env.W2S_CPU_FLAGS_OFF;
  try {
    delete process.env.W2S_CPU_FLAGS_OFF;
    const all = cpuFlags();
    const key = cpuKey();
    const tools = toolPaths('llama-server', packageRoot()).dir;
    if (all.length === 0) return t.pass('no /proc/cpuinfo flags here');
    const drop = all.slice(0, 2);
    process.env.W2S_CPU_FLAGS_OFF = `${drop[0]}, ${drop[1] ?? ''}`;
    t.deepEqual(cpuFlags(), all.filter((f) => !drop.includes(f)));
    t.not(cpuKey(), key);
    // The llama.cpp tools are built -march=native: their key stays the CPU's own.
    t.is(toolPaths('llama-server', packageRoot()).dir, tools);
  } finally {
    if (before === undefined) delete process.env.W2S_CPU_FLAGS_OFF;
    else process.env.W2S_CPU_FLAGS_OFF = before;
  }
});

test('the fixes to ggml apply to the pinned llama.cpp, and each cache key names what was patched in', (t) => {
  const src = llamaSource(packageRoot());
  // A private clone at the pinned commit (hard links; seconds), as the builds make: `git apply --check`
  // against it fails when the pin moves and a patch no longer fits, before any build is tried.
  const dir = path.join(TMP, 'patch-check-src');
  fs.rmSync(dir, { recursive: true, force: true });
  t.is(spawnSync('git', ['clone', '--quiet', '--no-checkout', String(src.dir ?? src.clone), dir]).status, 0);
  t.is(spawnSync('git', ['-c', 'advice.detachedHead=false', '-C', dir, 'checkout', '--quiet', src.commit]).status, 0);
  t.true(PATCHES.includes('amx-tile-config.patch'));
  for (const patch of PATCHES) {
    const r = spawnSync('git', ['-C', dir, 'apply', '--check', path.join(packageRoot(), 'native', 'ggml-cpu', patch)], { encoding: 'utf8' });
    t.is(r.status, 0, `${patch}: ${r.stderr}`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const libDir = findPrebuiltLibDir(packageRoot());
  if (libDir && BUILT_HERE) t.true(path.basename(cpuBackendPaths(libDir)?.dir ?? "").endsWith(`-k${kernelSha256().slice(0, 8)}`));
  // The llama.cpp tools (llama-server, llama-batched-bench) carry the AMX fix: a build from before it, which
  // dies with SIGILL on an AMX CPU, has another key and is never reused.
  for (const tool of ['llama-server', 'llama-batched-bench']) t.true(path.basename(toolPaths(tool, packageRoot()).dir).endsWith(`-p${toolPatchSha256().slice(0, 8)}`));
});

test.serial('the addon registers the CPU backend built for this machine, with the prebuilt variant\'s results', async (t) => {
  const libDir = findPrebuiltLibDir(packageRoot());
  t.truthy(libDir, 'node-llama-cpp\'s prebuilt libraries');
  const model = await tinyModel({ arch: 'llama', type: 'q8_0', seed: 41 });
  const prebuilt = mustRun(model, { W2S_CPU_BACKEND: 'prebuilt' });
  t.is(prebuilt.cpuBackend.source, 'prebuilt');
  if (!BUILT_HERE) {
    t.is(ggmlIsaOptions(), undefined);
    t.is(mustRun(model, {}).cpuBackend.source, 'prebuilt', 'no build off x86-64 Linux: the prebuilt variants');
    return;
  }
  // Built at install (scripts/install.mjs); a cleared cache is rebuilt here (about a minute).
  const lib = await ensureCpuBackend({ libDir: libDir!, log: (l: string) => t.log(l) });
  const host = mustRun(model, {});
  t.is(host.cpuBackend.source, 'host');
  t.is(host.cpuBackend.path, lib);
  t.is(host.loadLog.includes('not loaded'), false, host.loadLog);
  const forced = mustRun(model, { W2S_CPU_BACKEND: 'host' });
  t.is(forced.cpuBackend.source, 'host');
  // 'auto' may pick another attention kernel for each build (lib/model/attention.ts), so the default greedy
  // text can part where a random-weight model has near-ties; the same kernel must give the same numbers
  // (here bit for bit, flash attention aside: F16 -> F32 is exact whether converted in software or by F16C).
  const prefix = (a: string, b: string) => { let i = 0; while (i < a.length && a[i] === b[i]) i++; return i; };
  t.log(`greedy text: ${host.greedy.map((g, i) => `${prefix(g, prebuilt.greedy[i]!)} of ${g.length} chars`).join(', ')} the same`);
  t.true(host.greedy.every((g) => g.length > 0));
  const dl = maxAbs(host.logprobs, prebuilt.logprobs);
  const dloss = maxAbs(host.losses, prebuilt.losses);
  t.log(`host ${lib}: ${host.cpuBackend.note}; max |Δ log p| against the prebuilt variant ${dl.toExponential(2)} over ${host.logprobs.length} tokens; ` +
    `max |Δ loss| ${dloss.toExponential(2)} over ${host.losses.length} steps`);
  t.true(host.logprobs.length === prebuilt.logprobs.length && host.logprobs.length > 0);
  t.true(dl <= 1e-3);
  t.true(host.losses.length === prebuilt.losses.length && dloss <= 1e-3);
  // Decode with flash attention: the build here runs our kernel (native/ggml-cpu/flash_attn_decode.inc, F32
  // accumulator), the prebuilt ggml's (F16 accumulator). Each is compared with plain attention of its own
  // build (matrix products, a separate softmax), while the greedy tokens agree.
  const flashVsPlain = (r: ChildResult) => {
    let worst = 0;
    let compared = 0;
    r.flash.forEach((f, i) => {
      const p = r.plain[i]!;
      for (let k = 0; k < f.tokenIds.length && f.tokenIds[k] === p.tokenIds[k]; k++, compared++) worst = Math.max(worst, Math.abs(f.logprobs[k]! - p.logprobs[k]!));
    });
    return { worst, compared };
  };
  const ours = flashVsPlain(host);
  const theirs = flashVsPlain(prebuilt);
  const kernel = runsOwnFlashKernel({ systemInfo: host.systemInfo, cpuBackend: host.cpuBackend.source, cpuKernels: host.cpuBackend.kernels });
  t.log(`flash-attention decode against plain attention, max |Δ log p|: built here ${ours.worst.toExponential(2)} over ${ours.compared} tokens` +
    `${kernel ? ' (our kernel)' : ''}, prebuilt ${theirs.worst.toExponential(2)} over ${theirs.compared} tokens`);
  t.true(ours.compared >= 8 && theirs.compared >= 8);
  // Plain attention rounds the softmax to F16 for its V product, so it is no exact reference either (this
  // random model magnifies it: both builds differ from it by ~1.5e-2); test/sample-attention.test.ts checks
  // against llama.cpp with an F32 KV cache, and native/tests/flash_attn_check.cpp against float64.
  t.true(ours.worst <= theirs.worst + 1e-3 && ours.worst < 5e-2, 'the build here is no further from plain attention than the prebuilt');
});

test.serial('a damaged, foreign or unloadable build is never used: the prebuilt variants run and the reason is reported', async (t) => {
  if (!BUILT_HERE) {
    t.pass('no build off x86-64 Linux (the test above checks the prebuilt variants run)');
    return;
  }
  const libDir = findPrebuiltLibDir(packageRoot())!;
  const lib = await ensureCpuBackend({ libDir, log: (l: string) => t.log(l) });
  const good = cachedCpuBackend(libDir);
  t.is(good.lib, lib);
  const model = await tinyModel({ arch: 'llama', type: 'q8_0', seed: 41 });
  const reference = mustRun(model, { W2S_CPU_BACKEND: 'prebuilt' });
  const entry = path.basename(cpuBackendPaths(libDir)!.dir);
  const stamp = JSON.parse(fs.readFileSync(path.join(path.dirname(lib), 'build.json'), 'utf8')) as Record<string, unknown>;
  /** A cache root holding this build's entry with `libBytes` as the library and `stampEdit` applied to its stamp. */
  const cacheWith = (name: string, libBytes: Buffer, stampEdit: (s: Record<string, unknown>, libFile: string) => void) => {
    const root = path.join(TMP, `cpu-cache-${name}`);
    const dir = path.join(root, entry);
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'libggml-cpu.so');
    fs.writeFileSync(file, libBytes);
    const s = { ...stamp };
    stampEdit(s, file);
    fs.writeFileSync(path.join(dir, 'build.json'), JSON.stringify(s));
    return { root, file };
  };
  const bytes = fs.readFileSync(lib);
  const cases = [
    // cut short after its stamp was written (the stamp's hash no longer matches): not offered to ggml at all
    { name: 'truncated', ...cacheWith('truncated', bytes.subarray(0, bytes.length >> 1), () => {}), why: /not the file its build wrote/ },
    // made for another libggml-base.so (another node-llama-cpp): not offered
    { name: 'foreign', ...cacheWith('foreign', bytes, (s) => { s.baseSha256 = '0'.repeat(64); }), why: /made for another libggml-base\.so/ },
    // a stamp that matches a file the dynamic linker rejects: offered, fails to load, the prebuilt variants run
    { name: 'unloadable', ...cacheWith('unloadable', Buffer.from('not an ELF file\n'.repeat(64)), (s, f) => { s.libSha256 = sha256(f); }), why: /did not load/ },
  ];
  for (const c of cases) {
    const r = mustRun(model, { W2S_CACHE_DIR: c.root });
    t.log(`${c.name}: ${r.cpuBackend.source}: ${r.cpuBackend.note}${r.loadLog ? `; log: ${r.loadLog.trim()}` : ''}`);
    t.is(r.cpuBackend.source, 'prebuilt', c.name);
    t.regex(r.cpuBackend.note, c.why, c.name);
    if (c.name === 'unloadable') t.true(r.loadLog.includes(c.file) && r.loadLog.includes('not loaded'), r.loadLog);
    t.deepEqual(r.greedy, reference.greedy, `${c.name}: the prebuilt variant's results`);
    t.deepEqual(r.logprobs, reference.logprobs, `${c.name}: the prebuilt variant's log-probs, bit for bit`);
    const required = runChild(model, { W2S_CACHE_DIR: c.root, W2S_CPU_BACKEND: 'host' });
    t.not(required.status, 0, `${c.name}: W2S_CPU_BACKEND=host fails`);
    t.regex(required.stderr, /W2S_CPU_BACKEND=host/, c.name);
  }
  const bad = runChild(model, { W2S_CPU_BACKEND: 'fastest' });
  t.not(bad.status, 0);
  t.regex(bad.stderr, /Expected 'auto', 'host' or 'prebuilt' for W2S_CPU_BACKEND/);
});

test.serial('`w2s cpu-backend` reports the build, or its absence, and a failed --build is a typed error that keeps the prebuilt variants', async (t) => {
  const cli = path.join(here, '..', 'lib', 'cli', 'main.js');
  const w2s = (env: Record<string, string>, ...args: string[]) => spawnSync(process.execPath, [cli, 'cpu-backend', ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120_000 });
  if (!BUILT_HERE) {
    const r = w2s({});
    t.is(r.status, 0);
    t.regex(r.stdout, /x86-64 Linux only/);
    return;
  }
  const lib = await ensureCpuBackend({ libDir: findPrebuiltLibDir(packageRoot())!, log: (l: string) => t.log(l) });
  const built = w2s({});
  t.is(built.status, 0, built.stderr);
  t.is(built.stdout.trim().split(' ')[1], lib);
  // The kernels this CPU's build runs: flash attention everywhere, the Q8_0 GEMM on AVX2 without VNNI or AVX-512.
  const names = activeKernels(ggmlIsaOptions()!);
  t.true(names.includes('flash_attn_decode'));
  t.regex(built.stdout, new RegExp(`with weak2strong's ${names.join(', ')} kernel${names.length > 1 ? 's' : ''}\\b`));
  const empty = path.join(TMP, 'cpu-cache-cli');
  const none = w2s({ W2S_CACHE_DIR: empty });
  t.is(none.status, 0, none.stderr);
  t.regex(none.stdout, /^not built: none built yet .*w2s cpu-backend --build.*; the prebuilt variants run/);
  // A machine without cmake: --build fails fast, says so, and leaves nothing a later run would trust.
  const bin = path.join(TMP, 'bin-without-cmake');
  fs.mkdirSync(bin, { recursive: true });
  for (const tool of ['git', 'nice']) {
    const at = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    if (at && !fs.existsSync(path.join(bin, tool))) fs.symlinkSync(at, path.join(bin, tool));
  }
  const failed = w2s({ W2S_CACHE_DIR: empty, PATH: bin }, '--build');
  t.log(failed.stderr.trim().split('\n').at(-1));
  t.is(failed.status, 2, 'a BackendUnavailableError is a user error');
  t.false(fs.existsSync(path.join(empty, path.basename(path.dirname(lib)), 'build')), 'the failed build folder is removed');
  t.false(fs.existsSync(path.join(empty, path.basename(path.dirname(lib)), 'src')), 'and the patched copy of the source');
  t.false(fs.existsSync(path.join(empty, path.basename(path.dirname(lib)), 'build.json')));
  t.regex(failed.stderr, /the CPU backend build failed \(the prebuilt variants keep running\).*cmake/s);
  t.regex(failed.stderr, /ERR_W2S_BACKEND_UNAVAILABLE/);
  t.regex(w2s({ W2S_CACHE_DIR: empty }).stdout, /^not built/);
});
