// The sampler's attention kernel (lib/model/attention.ts): the 'auto' rule, and flash and plain attention
// both giving llama.cpp's own log-probs (node-llama-cpp, F32 KV) on the tokens they sampled.
import test from 'ava';
import { chooseAttention, cpuF16Step, runsOwnFlashKernel, windowFill } from '../lib/model/attention.js';
import { loadModel, type Model } from '../lib/model.js';
import { addonLocation } from '../lib/native.js';
import { PROMPTS, tinyModel } from './helpers/models.js';
import { referenceLogprobs } from './helpers/nlc.js';

// llama_print_system_info() lines of node-llama-cpp's CPU backend variants (the features each was built with).
const HASWELL = 'CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | REPACK = 1 |';
const ZEN4 = 'CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | REPACK = 1 |';

test('the F16 step comes from the CPU backend features', (t) => {
  t.is(cpuF16Step(HASWELL), 32);
  t.is(cpuF16Step(ZEN4), 64);
  t.is(cpuF16Step('CPU : AVX512_VBMI = 1 | SSE3 = 1 |'), undefined, 'AVX512_VBMI alone is not AVX512');
  t.is(cpuF16Step('CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 |'), 32);
  t.is(cpuF16Step('CPU : NEON = 1 | ARM_FMA = 1 |'), 16);
  t.is(cpuF16Step('CPU : NEON = 1 | SVE = 1 | SVE_CNT = 16 |'), 64);
  t.is(cpuF16Step('CPU : RISCV_V = 1 | RVV_VLEN = 32 |'), undefined);
  t.is(cpuF16Step(''), undefined);
});

test('windowFill is the mean window over the mean padded window of a decode', (t) => {
  for (const [prompt, gen] of [[47, 64], [390, 128], [110, 256], [1000, 3000], [1, 1]] as const) {
    let actual = 0;
    let padded = 0;
    for (let pos = prompt + 1; pos <= prompt + gen; pos++) {
      actual += pos;
      padded += Math.ceil(pos / 256) * 256;
    }
    const f = windowFill(prompt, gen);
    t.true(Math.abs(f - actual / padded) < 0.02, `${prompt} + ${gen}: ${f} vs ${actual / padded}`);
  }
  t.true(windowFill(47, 64) < 0.5 && windowFill(390, 128) > 0.5);
});

test("'auto' runs plain attention where a head is not whole F16 steps, and flash attention elsewhere", (t) => {
  const cpu = (systemInfo: string | undefined) => ({ gpuLayers: 0, systemInfo });
  const head = (k: number, v = k) => ({ headDimK: k, headDimV: v });
  const fewShot = { promptTokens: 390, maxTokens: 128 };
  const short = { promptTokens: 47, maxTokens: 64 };
  t.is(chooseAttention('auto', head(32), cpu(ZEN4), short).mode, 'plain'); // below the step: always plain
  t.is(chooseAttention('auto', head(32), cpu(HASWELL), fewShot).mode, 'flash'); // one whole step
  t.is(chooseAttention('auto', head(96), cpu(ZEN4), fewShot).mode, 'plain'); // a tail, full windows
  t.is(chooseAttention('auto', head(96), cpu(ZEN4), short).mode, 'flash'); // a tail, mostly padding
  t.is(chooseAttention('auto', head(128, 96), cpu(ZEN4), fewShot).mode, 'plain', 'the value head counts too');
  t.is(chooseAttention('auto', head(64), cpu(ZEN4), fewShot).mode, 'flash');
  t.is(chooseAttention('auto', head(256), cpu(ZEN4), fewShot).mode, 'flash');
  t.is(chooseAttention('auto', head(16), { gpuLayers: 999, systemInfo: ZEN4 }, fewShot).mode, 'flash');
  t.is(chooseAttention('auto', head(16), cpu('CPU : RISCV_V = 1 |'), fewShot).mode, 'flash');
  t.is(chooseAttention('auto', head(16), cpu(undefined), fewShot).mode, 'flash');
  t.is(chooseAttention('flash', head(16), cpu(ZEN4), fewShot).mode, 'flash');
  t.is(chooseAttention('plain', head(128), cpu(ZEN4), fewShot).mode, 'plain');
  t.is(chooseAttention('flash', head(128), cpu(ZEN4), { ...fewShot, highPrecision: true }).mode, 'plain');
  t.regex(chooseAttention('auto', head(32), cpu(ZEN4), short).reason, /head size 32 is below this CPU's 64-wide F16 step/);
  // A CPU backend built on this machine runs the tail faster: below the step follows the tail's rule.
  const host = { gpuLayers: 0, systemInfo: ZEN4, cpuBackend: 'host' };
  t.is(chooseAttention('auto', head(32), host, short).mode, 'flash');
  t.is(chooseAttention('auto', head(32), host, fewShot).mode, 'plain');
  t.is(chooseAttention('auto', head(96), host, short).mode, 'flash');
  t.is(chooseAttention('auto', head(96), host, fewShot).mode, 'plain');
  t.is(chooseAttention('auto', head(64), host, fewShot).mode, 'flash');
  t.is(chooseAttention('auto', head(32), { ...host, cpuBackend: 'prebuilt' }, short).mode, 'plain');
  const zeroShot = { promptTokens: 110, maxTokens: 256 }; // fills 0.65: flash on the build here, plain for a prebuilt tail
  t.is(chooseAttention('auto', head(32), host, zeroShot).mode, 'flash');
  t.is(chooseAttention('auto', head(96), host, zeroShot).mode, 'flash');
  t.is(chooseAttention('auto', head(96), cpu(ZEN4), zeroShot).mode, 'plain');
  t.regex(chooseAttention('auto', head(32), host, short).reason, /below this CPU's 64-wide F16 step, but the windows fill only 0\.\d\d/);
  // A build here with our flash-attention kernel (native/ggml-cpu/flash_attn_decode.inc, AVX2 + F16C + FMA):
  // flash attention at every head size and window; not where the kernel is not compiled in (no AVX2).
  const kernel = { ...host, cpuKernels: ['flash_attn_decode'] };
  for (const hd of [16, 32, 96, 128]) {
    for (const job of [fewShot, short, zeroShot]) t.is(chooseAttention('auto', head(hd), kernel, job).mode, 'flash', `head ${hd}`);
  }
  t.regex(chooseAttention('auto', head(32), kernel, fewShot).reason, /weak2strong's flash-attention kernel/);
  t.is(chooseAttention('auto', head(32), { ...kernel, cpuBackend: 'prebuilt' }, fewShot).mode, 'plain', 'the kernel only counts in the build here');
  t.is(chooseAttention('auto', head(16), { ...kernel, systemInfo: 'CPU : SSE3 = 1 | AVX = 1 | LLAMAFILE = 1 |' }, fewShot).mode, 'plain', 'no AVX2: ggml\'s own kernel, and its rule');
  t.is(chooseAttention('plain', head(32), kernel, fewShot).mode, 'plain');
  t.true(runsOwnFlashKernel(kernel));
  t.false(runsOwnFlashKernel({ ...kernel, cpuKernels: [] }), 'a build here without the kernel');
  t.false(runsOwnFlashKernel({ ...kernel, systemInfo: HASWELL.replace('FMA = 1', 'FMA = 0') }), 'FMA missing');
});

/** Whether this process's CPU backend runs weak2strong's flash-attention kernel (built here, with AVX2 + F16C + FMA). */
function ourFlashKernel(): boolean {
  const loc = addonLocation();
  return runsOwnFlashKernel({ systemInfo: loc.systemInfo, cpuBackend: loc.cpuBackend.source, cpuKernels: loc.cpuBackend.kernels });
}

let model: Model;
let modelFile: string;
test.before(async () => {
  modelFile = await tinyModel({ layers: 2, embd: 64, heads: 4, kvHeads: 2, vocab: 2000, ctx: 512, seed: 5 });
  model = await loadModel(modelFile);
});
test.after.always(() => model?.dispose());

test('the model reports its head sizes and the kernel its jobs get on this machine', (t) => {
  t.is(model.info.headDimK, 16);
  t.is(model.info.headDimV, 16);
  const step = cpuF16Step(addonLocation().systemInfo);
  const long = { promptTokens: 390, maxTokens: 128 }; // windows fill 0.87
  t.log(`CPU backend F16 step: ${step ?? 'unknown'}; auto: ${JSON.stringify(model.attention('auto', long))}`);
  const { source } = addonLocation().cpuBackend;
  t.is(model.attention('auto', long).mode, ourFlashKernel() || step === undefined || 16 % step === 0 ? 'flash' : 'plain');
  // Short windows (mostly padding): a CPU backend built here keeps flash attention below the step, the prebuilt one not.
  t.is(model.attention('auto', { promptTokens: 20, maxTokens: 20 }).mode, step === undefined || 16 % step === 0 || source === 'host' ? 'flash' : 'plain', source);
  t.is(model.attention('flash').mode, 'flash');
  t.throws(() => model.attention('fast' as never), { code: 'ERR_W2S_INVALID_ARGUMENT', message: /Expected 'auto', 'flash' or 'plain' for attention/ });
  t.throws(() => model.sample(PROMPTS, { attention: 'none' as never }), { code: 'ERR_W2S_INVALID_ARGUMENT', message: /attention/ });
});

test('flash and plain attention both give node-llama-cpp\'s log-probs on the tokens they sampled, and the same greedy text', async (t) => {
  const o = { n: 2, maxTokens: 20, temperature: 1, seed: 4, threads: 1, parallel: 4, logprobs: true } as const;
  const runs = { flash: await model.sample(PROMPTS, { ...o, attention: 'flash' }), plain: await model.sample(PROMPTS, { ...o, attention: 'plain' }) };
  const samplesIndex = (s: { promptIndex: number; sampleIndex: number }) => s.promptIndex * o.n + s.sampleIndex;
  for (const [mode, samples] of Object.entries(runs)) {
    let maxDiff = 0;
    let compared = 0;
    for (const s of samples.filter((x) => x.sampleIndex === 0 && x.tokens > 0)) {
      const p = model.tokenize(PROMPTS[s.promptIndex]!, { addSpecial: true });
      const ref = await referenceLogprobs(modelFile, [...p, ...s.tokenIds!], p.length);
      for (let i = 0; i < s.tokens; i++) maxDiff = Math.max(maxDiff, Math.abs(ref[i]! - s.logprobs![i]!));
      compared += s.tokens;
    }
    t.log(`${mode}: ${compared} tokens, max |log-prob - node-llama-cpp| = ${maxDiff.toExponential(2)}`);
    t.true(compared > 40);
    // F16 K and V (the reference has F32): rounding of ~1e-3 relative in each cached value.
    t.true(maxDiff < 5e-3, `${mode}: ${maxDiff}`);
    // Our kernel (the CPU backend built here with AVX2) accumulates in F32: closer than ggml's F16 accumulator
    // (measured 2026-12-03, AVX2 host: ours 3.6e-4, ggml's prebuilt kernel 1.1e-3, plain attention 4.1e-4).
    if (mode === 'flash' && ourFlashKernel()) t.true(maxDiff < 7e-4, `our flash-attention kernel: ${maxDiff}`);
  }
  // The option reaches the context: the two kernels round differently, so where both sampled the same
  // tokens their log-probs are close but not all bit-equal.
  const same = runs.flash.filter((s, i) => JSON.stringify(s.tokenIds) === JSON.stringify(runs.plain[i]!.tokenIds) && s.tokens > 0);
  t.true(same.length > 0);
  t.true(same.some((s) => s.logprobs!.some((lp, k) => lp !== runs.plain[samplesIndex(s)]!.logprobs![k])), 'flash and plain gave bit-identical log-probs');
  const greedy = { temperature: 0, maxTokens: 24, threads: 1 };
  const flash = await model.sample(PROMPTS, { ...greedy, attention: 'flash' });
  const plain = await model.sample(PROMPTS, { ...greedy, attention: 'plain', parallel: 2 });
  t.deepEqual(plain.map((s) => s.text), flash.map((s) => s.text));
});
