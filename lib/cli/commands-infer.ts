// `w2s sample` (batched sampling to JSONL) and `w2s logprob` (completion log-probs).
import { Option, type Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { sampleResumable } from '../generate/resumable.js';
import { writeFileAtomic, toJsonl } from '../io/atomic.js';
import { checkOutputPaths } from '../io/outputs.js';
import { loadModel, type Model } from '../model.js';
import { toRow } from '../remote/journal.js';
import { RemoteGenerator, REMOTE_DEFAULTS } from '../remote/openai.js';
import type { SampleOptions } from '../sample-options.js';
import { collect, floatArg, intArg, interruptSignal, readRows, stringField } from './args.js';
import { createProgress } from './progress.js';

async function withModel<T>(file: string, loraFile: string | undefined, run: (m: Model, lora: SampleOptions['lora']) => Promise<T>): Promise<T> {
  const model = await loadModel(file);
  try {
    const lora = loraFile ? await model.loadLora(loraFile) : undefined;
    return await run(model, lora);
  } finally {
    model.dispose();
  }
}

/** The files a model command reads: --model, --lora and its data file. */
export function modelInputs(o: { model: string; lora?: string }, data: { name: string; path: string }) {
  return [{ name: '--model', path: o.model }, ...(o.lora ? [{ name: '--lora', path: o.lora }] : []), data];
}

export function registerInferCommands(program: Command): void {
  program
    .command('sample')
    .description('sample K completions per prompt: locally (continuous batching, shared prompt KV cache) or on a server (--endpoint)')
    .option('--model <file>', 'GGUF model (local sampling)')
    .option('--lora <file>', 'GGUF LoRA adapter to apply (local sampling)')
    .option('--endpoint <url>', 'OpenAI-compatible server (llama-server, vLLM, SGLang, TGI, Ollama), e.g. http://host:8080/v1')
    .option('--model-name <name>', 'the served model\'s name (with --endpoint)')
    .option('--api-key-env <var>', 'environment variable holding the API key (with --endpoint)', REMOTE_DEFAULTS.apiKeyEnv)
    .option('--concurrency <n>', 'requests in flight (with --endpoint)', intArg('--concurrency', 1), REMOTE_DEFAULTS.concurrency)
    .option('--timeout <s>', 'seconds per request before it is retried (with --endpoint)', floatArg('--timeout'), REMOTE_DEFAULTS.timeout)
    .option('--retries <n>', 'retries on 429/5xx/timeouts/connection errors (with --endpoint)', intArg('--retries', 0), REMOTE_DEFAULTS.retries)
    .option('--logprobs', 'also write per-token log-probs of the sampled tokens (locally: computed in the same pass, with token_ids; with --endpoint: where the engine offers them)')
    .option('--token-ids', 'also write the sampled token ids (local sampling)')
    .option('--group-samples', 'one request with n per prompt instead of one per sample (with --endpoint)')
    .option('--extra <json>', 'JSON object merged into every request body, e.g. \'{"lora":[{"id":0,"scale":1}]}\' (with --endpoint)')
    .requiredOption('--prompts <file>', 'JSONL (or JSON array) of objects holding the prompt')
    .option('--field <name>', 'prompt field of each row', 'prompt')
    .option('--n <k>', 'samples per prompt', intArg('--n', 1), 1)
    .option('--temperature <t>', 'temperature (0 = greedy)', floatArg('--temperature'), 1)
    .option('--top-p <p>', 'nucleus mass (1 = off)', floatArg('--top-p'), 1)
    .option('--top-k <k>', 'top-k (0 = off)', intArg('--top-k', 0), 0)
    .option('--seed <s>', 'seed of the per-sample random streams', intArg('--seed', 0), 0)
    .option('--max-tokens <n>', 'new tokens per sample at most', intArg('--max-tokens', 1), 256)
    .option('--stop <str>', 'stop string (repeatable)', collect, [])
    .option('--parallel <n>', 'sequences decoded together', intArg('--parallel', 1))
    .option('--threads <n>', 'CPU threads (default: measured once per machine and model size; see README, "Default threads")', intArg('--threads', 1))
    .option('--context <n>', 'positions per sequence (default: the model\'s)', intArg('--context', 2))
    .addOption(new Option('--attention <kernel>', 'attention kernel (local): auto picks plain attention on CPUs whose flash attention would run the model\'s heads element by element').choices(['auto', 'flash', 'plain']).default('auto'))
    .requiredOption('--out <file>', 'output JSONL: {prompt_index, sample_index, text, tokens, finish_reason}')
    .action(async (o) => {
      if (o.endpoint) return sampleRemote(o);
      if (!o.model) throw new InvalidArgumentError('w2s sample needs --model FILE (local) or --endpoint URL --model-name NAME (remote)');
      await checkOutputPaths([{ name: '--out', path: o.out }], modelInputs(o, { name: '--prompts', path: o.prompts }));
      const rows = await readRows(o.prompts);
      const prompts = stringField(rows, o.field, o.prompts);
      const signal = interruptSignal();
      const total = prompts.length * o.n;
      const started = Date.now();
      const samples = await withModel(o.model, o.lora, async (model, lora) => {
        const bar = createProgress('sample', total, 'samples');
        try {
          return await model.sample(prompts, {
            n: o.n, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed, maxTokens: o.maxTokens,
            stop: o.stop, parallel: o.parallel, threads: o.threads, contextSize: o.context, attention: o.attention, lora, signal,
            tokenIds: Boolean(o.tokenIds), logprobs: Boolean(o.logprobs),
            onProgress: (p) => bar.update(p.finished, `${p.tokens} tokens`),
          });
        } finally {
          bar.stop();
        }
      });
      await writeFileAtomic(o.out, toJsonl(samples.map(toRow)));
      const tokens = samples.reduce((a, s) => a + s.tokens, 0);
      const secs = (Date.now() - started) / 1000;
      process.stderr.write(`${samples.length} samples, ${tokens} tokens in ${secs.toFixed(1)} s (${(tokens / secs).toFixed(1)} tokens/s) -> ${o.out}\n`);
    });

  program
    .command('logprob')
    .description('log-probability of each completion given its prompt (rows {prompt, completion})')
    .requiredOption('--model <file>', 'GGUF model')
    .option('--lora <file>', 'GGUF LoRA adapter to apply')
    .requiredOption('--data <file>', 'JSONL (or JSON array) of {prompt, completion}')
    .option('--per-token', 'also write token_logprobs (one per completion token)')
    .option('--threads <n>', 'CPU threads (default: measured once per machine and model size; see README, "Default threads")', intArg('--threads', 1))
    .option('--out <file>', 'output JSONL (default: stdout)')
    .action(async (o) => {
      if (o.out) await checkOutputPaths([{ name: '--out', path: o.out }], modelInputs(o, { name: '--data', path: o.data }));
      const rows = await readRows(o.data);
      const prompts = stringField(rows, 'prompt', o.data);
      const completions = stringField(rows, 'completion', o.data);
      const signal = interruptSignal();
      const scores = await withModel(o.model, o.lora, async (model, lora) => {
        const bar = createProgress('logprob', rows.length, 'rows');
        try {
          return await model.score(prompts.map((prompt, i) => ({ prompt, completion: completions[i]! })), {
            lora, threads: o.threads, signal, onProgress: (p) => bar.update(p.done),
          });
        } finally {
          bar.stop();
        }
      });
      const out = toJsonl(rows.map(({ row }, i) => ({
        ...row, logprob: scores[i]!.sum, tokens: scores[i]!.tokens,
        ...(o.perToken ? { token_logprobs: Array.from(scores[i]!.logprobs) } : {}),
      })));
      if (o.out) await writeFileAtomic(o.out, out);
      else process.stdout.write(out);
    });
}

/** `w2s sample --endpoint`: requests go out concurrently; each answer is appended to `<out>.partial` as it
 * arrives, so a crash or Ctrl-C loses only the requests in flight and a re-run asks only for the rest. */
async function sampleRemote(o: Record<string, any>): Promise<void> {
  if (!o.modelName) throw new InvalidArgumentError('--endpoint needs --model-name NAME (the model\'s name on the server)');
  if (o.model || o.lora) throw new InvalidArgumentError('--model and --lora are for local sampling; with --endpoint the server holds the model (see docs/remote.md for adapters)');
  for (const name of ['parallel', 'threads', 'context'] as const) {
    if (o[name] !== undefined) throw new InvalidArgumentError(`--${name} is for local sampling; with --endpoint use --concurrency`);
  }
  let extraBody: Record<string, unknown> | undefined;
  if (o.extra !== undefined) {
    try {
      extraBody = JSON.parse(o.extra);
    } catch {
      extraBody = undefined;
    }
    if (typeof extraBody !== 'object' || extraBody === null || Array.isArray(extraBody)) throw InvalidArgumentError.expected('JSON object', '--extra', o.extra);
  }
  const partial = `${o.out}.partial`;
  // Regular files only: the partial results live beside --out (a pipe or /dev/stdout has no "beside").
  await checkOutputPaths([{ name: '--out', path: o.out, regularFile: true }, { name: '--out (partial results)', path: partial, regularFile: true }], [{ name: '--prompts', path: o.prompts }]);
  const rows = await readRows(o.prompts);
  const prompts = stringField(rows, o.field, o.prompts);
  const signal = interruptSignal();
  const quiet = process.stderr.isTTY;
  let retries = 0;
  const gen = new RemoteGenerator({
    endpoint: o.endpoint, model: o.modelName, apiKeyEnv: o.apiKeyEnv, concurrency: o.concurrency, timeout: o.timeout, retries: o.retries,
    logprobs: Boolean(o.logprobs), groupSamples: Boolean(o.groupSamples), extraBody,
    onRetry: (r) => {
      retries += 1;
      if (!quiet) process.stderr.write(`sample: prompt ${r.promptIndex} attempt ${r.attempt + 1} in ${r.delay.toFixed(1)} s (${r.reason})\n`);
    },
  });
  const total = prompts.length * o.n;
  const started = Date.now();
  let bar: ReturnType<typeof createProgress> | undefined;
  let first: { tokens: number; finished: number } | undefined;
  const result = await (async () => {
    try {
      return await sampleResumable(gen, prompts, {
        partial, identity: { model: o.modelName, logprobs: Boolean(o.logprobs), groupSamples: Boolean(o.groupSamples), extra: extraBody ?? null },
        n: o.n, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed, maxTokens: o.maxTokens, stop: o.stop, signal,
        onProgress: (p) => {
          bar ??= createProgress('sample', total, 'samples');
          first ??= p; // samples read back from the partial file do not count towards the speed
          const secs = (Date.now() - started) / 1000;
          const rate = secs > 0 ? (p.tokens - first.tokens) / secs : 0;
          bar.update(p.finished, `${p.tokens} tokens, ${rate.toFixed(1)} tokens/s${retries ? `, ${retries} retries` : ''}`);
        },
      });
    } finally {
      bar?.stop();
    }
  })();
  await writeFileAtomic(o.out, toJsonl(result.samples.map(toRow)));
  result.done();
  const tokens = result.samples.reduce((a, s) => a + s.tokens, 0);
  const secs = (Date.now() - started) / 1000;
  const fresh = result.samples.length - result.resumed;
  process.stderr.write(`${result.samples.length} samples (${result.resumed ? `${result.resumed} from ${partial}, ` : ''}${fresh} generated by ${gen.description}), ` +
    `${tokens} tokens in ${secs.toFixed(1)} s -> ${o.out}\n`);
}
