// `w2s sample` (batched sampling to JSONL) and `w2s logprob` (completion log-probs).
import type { Command } from 'commander';
import { writeFileAtomic, toJsonl } from '../io/atomic.js';
import { checkOutputPaths } from '../io/outputs.js';
import { loadModel, type Model } from '../model.js';
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
    .description('sample K completions per prompt (continuous batching, shared prompt KV cache)')
    .requiredOption('--model <file>', 'GGUF model')
    .option('--lora <file>', 'GGUF LoRA adapter to apply')
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
    .option('--threads <n>', 'CPU threads (default: physical cores)', intArg('--threads', 1))
    .option('--context <n>', 'positions per sequence (default: the model\'s)', intArg('--context', 2))
    .requiredOption('--out <file>', 'output JSONL: {prompt_index, sample_index, text, tokens, finish_reason}')
    .action(async (o) => {
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
            stop: o.stop, parallel: o.parallel, threads: o.threads, contextSize: o.context, lora, signal,
            onProgress: (p) => bar.update(p.finished, `${p.tokens} tokens`),
          });
        } finally {
          bar.stop();
        }
      });
      await writeFileAtomic(o.out, toJsonl(samples.map((s) => ({
        prompt_index: s.promptIndex, sample_index: s.sampleIndex, text: s.text, tokens: s.tokens, finish_reason: s.finishReason,
      }))));
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
    .option('--threads <n>', 'CPU threads (default: physical cores)', intArg('--threads', 1))
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
