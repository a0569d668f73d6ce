// `w2s bench sample` / `w2s bench train` / `w2s bench remote`: print figures and the ratio against a peer measured in the same run.
import { type Command, Option } from 'commander';
import { runRemoteBench } from '../bench/remote-bench.js';
import { runSampleBench } from '../bench/sample-bench.js';
import { runSampleSuite } from '../bench/sample-suite.js';
import { runRealSizeTrainBench } from '../bench/train-real-size.js';
import { runTrainBench } from '../bench/train-bench.js';
import { floatArg, intArg } from './args.js';

export function registerBenchCommands(program: Command): void {
  const bench = program.command('bench').description('benchmarks against a peer measured in the same run');
  bench
    .command('sample')
    .description('batched sampling tokens/s: weak2strong vs node-llama-cpp and llama-batched-bench')
    .option('--model <file>', 'GGUF model (default: a created ~25M-parameter 32k-vocabulary q8_0 model)')
    .option('--prompts <n>', 'prompts', intArg('--prompts', 1), 16)
    .option('--n <k>', 'samples per prompt', intArg('--n', 1), 4)
    .option('--max-tokens <n>', 'new tokens per sample', intArg('--max-tokens', 1), 64)
    .option('--threads <n...>', 'thread counts to try (default 1 … physical cores)')
    .option('--parallel <n...>', 'weak2strong sequences in flight to try (default: the sampler\'s default)')
    .addOption(new Option('--attention <kernel...>', 'weak2strong attention kernels to try (default: auto)').choices(['auto', 'flash', 'plain']))
    .addOption(new Option('--repack <mode...>', "weak2strong with quantized weights repacked for this CPU's kernels (on, the default) and/or not (off)").choices(['on', 'off']))
    .option('--few-shot <k>', 'solved examples before each question (long prompts, as weak-ICL\'s)', intArg('--few-shot', 0), 0)
    .option('--distinct-demos', 'with --few-shot: each prompt opens with its own examples (no common prefix) instead of the same ones, as the pipeline\'s weak-ICL step has')
    .option('--long-questions', 'GSM8K-length questions (~100 tokens) instead of the short ones (~47)')
    .addOption(new Option('--suite <name>', 'method: every shape of the method (zero-/few-shot prompts, n = 1 and 10, 256 new tokens) and parallel 1-64, with a table; the shape options are then ignored').choices(['method']))
    .option('--no-batched-bench', 'skip llama-batched-bench (built once from the bundled source, then cached)')
    .option('--no-node-llama-cpp', 'skip node-llama-cpp')
    .option('--peer-limit <factor>', 'stop a node-llama-cpp run after this many times our best time (reported as a bound; default 20)', floatArg('--peer-limit'))
    .option('--paired <rounds>', 'closing rounds against llama-batched-bench at each parallelism, alternated (the median ratio judges the 0.9 target; with --suite on shape (a) unless --paired-shapes all)', intArg('--paired', 2))
    .addOption(new Option('--paired-shapes <which>', 'with --suite: shapes that get the paired rounds').choices(['a', 'all']).default('a'))
    .option('--json', 'print the rows as JSON on stdout')
    .action(async (o) => {
      const threads = o.threads?.map((t: string) => intArg('--threads', 1)(t));
      if (o.suite !== undefined) {
        const suite = await runSampleSuite({ model: o.model, threads, batchedBench: o.batchedBench, paired: o.paired, pairedShapes: o.pairedShapes });
        if (o.json) process.stdout.write(JSON.stringify(suite, null, 2) + '\n');
        return;
      }
      const rows = await runSampleBench({ longQuestions: o.longQuestions, nodeLlamaCpp: o.nodeLlamaCpp, peerLimitFactor: o.peerLimit,
        model: o.model, prompts: o.prompts, n: o.n, maxTokens: o.maxTokens, fewShot: o.fewShot, distinctDemos: o.distinctDemos, batchedBench: o.batchedBench,
        threads, paired: o.paired,
        parallel: o.parallel?.map((t: string) => intArg('--parallel', 1)(t)),
        attention: o.attention,
        repack: o.repack?.map((m: string) => m === 'on'),
      });
      if (o.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    });
  bench
    .command('remote')
    .description('sampling tokens/s through llama-server (OpenAI completions) vs the local sampler, same model and threads')
    .option('--model <file>', 'GGUF model (default: the created ~25M-parameter q8_0 model of bench sample)')
    .option('--server <file>', 'llama-server binary (default: the cached build; built when missing)')
    .option('--prompts <n>', 'prompts', intArg('--prompts', 1), 16)
    .option('--n <k>', 'samples per prompt', intArg('--n', 1), 10)
    .option('--max-tokens <n>', 'new tokens per sample', intArg('--max-tokens', 1), 64)
    .option('--threads <n>', 'threads for both (default: physical cores)', intArg('--threads', 1))
    .option('--parallel <n>', 'llama-server sequences (-np) and requests in flight', intArg('--parallel', 1), 16)
    .option('--json', 'print the rows as JSON on stdout')
    .action(async (o) => {
      const rows = await runRemoteBench({ model: o.model, server: o.server, prompts: o.prompts, n: o.n, maxTokens: o.maxTokens, threads: o.threads, parallel: o.parallel });
      if (o.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    });
  bench
    .command('train')
    .description('LoRA SFT tokens/s and peak RSS (F32 and Q8_0 base) vs llama.cpp full fine-tune (llama_opt_epoch)')
    .option('--steps <n>', 'optimizer steps', intArg('--steps', 1), 20)
    .option('--batch <n>', 'sequences per step', intArg('--batch', 1), 8)
    .option('--seq-len <n>', 'tokens per sequence (a multiple of 256)', intArg('--seq-len', 256), 256)
    .option('--prompt-len <n>', 'leading tokens without loss (LoRA SFT prompt)', intArg('--prompt-len', 1), 32)
    .option('--rank <n>', 'LoRA rank', intArg('--rank', 1), 8)
    .option('--threads <n>', 'threads for both engines (default: physical cores)', intArg('--threads', 1))
    .option('--paired <rounds>', 'rounds of the closing Q8_0-vs-F32 comparison (both bases alternated, the F32 runs\' spread as the noise band)', intArg('--paired', 2), 3)
    .option('--paired-only', 'only that comparison, not the table')
    .option('--json', 'print the rows as JSON on stdout')
    .action(async (o) => {
      const rows = await runTrainBench({ steps: o.steps, batch: o.batch, seqLen: o.seqLen, promptLen: o.promptLen, rank: o.rank, threads: o.threads, paired: o.paired, pairedOnly: o.pairedOnly });
      if (o.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    });
  bench
    .command('train-real')
    .description('one real-size run (Qwen2.5-0.5B shape, Q8_0, 4 × 512 tokens): peak RSS, tokens/s and memory plan, engine v2 vs v1')
    .option('--steps <n>', 'optimizer steps of engine v2 (v1 runs one)', intArg('--steps', 1), 2)
    .option('--threads <n>', 'threads (default 1)', intArg('--threads', 1), 1)
    .option('--json', 'print the rows as JSON on stdout')
    .action(async (o) => {
      const rows = await runRealSizeTrainBench({ steps: o.steps, threads: o.threads });
      if (o.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    });
}
