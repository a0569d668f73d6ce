// The standalone C++ test executable of the native core (the one a GPU machine without Node runs) builds
// and passes: ctest over native/tests/core_test.cpp in a build folder of its own.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { activeKernels, cachedCpuBackend, ggmlIsaOptions } from '../scripts/cpu-backend.mjs';
import { cpuFlags } from '../scripts/cache-paths.mjs';
import { findPrebuiltLibDir } from '../scripts/llama-paths.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('ctest: training graph vs llama.cpp, gradients vs finite differences, loss halves, the CPU kernels vs ggml', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'w2s-ctest-'));
  const build = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-native.mjs'), '--tests'], {
    cwd: root, env: { ...process.env, W2S_BUILD_DIR: dir }, encoding: 'utf8',
  });
  t.is(build.status, 0, build.stderr.slice(-2000));
  // The CPU backend built on this machine, when there is one: the flash-attention kernel it adds is checked too.
  const libDir = findPrebuiltLibDir(root);
  const own = libDir ? cachedCpuBackend(libDir).lib : undefined;
  const env = { ...process.env, ...(own ? { W2S_CPU_BACKEND_LIB: own } : {}) };
  const run = spawnSync('ctest', ['--output-on-failure', '--verbose'], { cwd: dir, env, encoding: 'utf8' });
  const out = run.stdout + run.stderr;
  for (const line of out.split('\n').filter((l) => /max \||worst relative|mean loss|passed, \d+ failed|CPU backend:|cases ran/.test(l))) t.log(line.replace(/^\d+: /, ''));
  t.is(run.status, 0, out.slice(-3000));
  t.regex(out, own ? /CPU backend: host / : /CPU backend: prebuilt/);
  // 9 checks of the training graph and scoring, 3 of the sampler's vectorized softmax (one per temperature),
  // 5 of the CPU OUT_PROD kernel, 14 of the CPU GEMM (one per shape and type), 6 of flash attention, and one
  // per repacked matmul that this CPU's buffer types take.
  const repacked = Number(/repacked matmul: (\d+) cases ran/.exec(out)?.[1] ?? NaN);
  t.true(Number.isInteger(repacked), 'the repacked-matmul check printed its count');
  t.regex(out, new RegExp(`\\b${37 + repacked} passed, 0 failed`));
  // The layouts this CPU must have run: AMX for Q8_0 (the bench's and most models' weights) where the CPU has
  // it, x86's 8-row Q4_0 repack wherever there is AVX2.
  const flags = cpuFlags();
  // (the build here follows cpuFlags(), which W2S_CPU_FLAGS_OFF may thin; a prebuilt variant the real CPU)
  const amx = own ? ggmlIsaOptions()?.AMX_INT8 === true : cpuFlags({ all: true }).includes('amx_int8');
  if (amx) t.regex(out, /repacked matmul, AMX q8_0 \[512 x 96\] by 64 columns/);
  if (flags.includes('avx2')) t.regex(out, /repacked matmul, CPU_REPACK q4_0 \[512 x 96\] by 64 columns/);
  // Our Q8_0 GEMM (native/ggml-cpu/q8_0_gemm.inc) where the build carries it: AVX2 without VNNI or AVX-512.
  if (own && activeKernels(ggmlIsaOptions()!).includes('q8_0_gemm')) {
    for (const n of ['\\[512 x 96\\] by 64', '\\[256 x 36\\] by 5', '\\[256 x 36\\] by 1']) t.regex(out, new RegExp(`repacked matmul, CPU_REPACK q8_0 ${n} columns`));
  }
  if (own && ['avx2', 'f16c', 'fma'].every((f) => cpuFlags().includes(f))) t.regex(out, /flash attention matches its float64 definition \(our kernel\)/);
  fs.rmSync(dir, { recursive: true, force: true });
});
