// `w2s train sft|dpo|orpo`: LoRA fine-tuning from the command line; a loss line per step on stdout, a
// progress bar on a TTY, a JSON training log beside the adapter.
import type { Command } from 'commander';
import { trainSft } from '../train/sft.js';
import { trainDpo, trainOrpo } from '../train/preference.js';
import { ALL_LORA_TARGETS, LORA_TARGETS, type LoraTarget, type TrainOptions, type TrainProgress } from '../train/options.js';
import { floatArg, intArg, interruptSignal } from './args.js';
import { createProgress } from './progress.js';
import { formatMemoryPlan } from '../train/memory-plan.js';

/** Options every trainer shares (SFT, DPO, ORPO). */
export function addTrainOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--model <file>', 'base model GGUF')
    .requiredOption('--data <file>', 'training data (JSONL or JSON)')
    .requiredOption('--out <file>', 'output LoRA adapter GGUF')
    .option('--lora <file>', 'continue from this adapter')
    .option('--rank <n>', 'LoRA rank', intArg('--rank', 1), 8)
    .option('--alpha <x>', 'LoRA alpha', floatArg('--alpha'), 16)
    .option('--dropout <p>', 'LoRA dropout', floatArg('--dropout'), 0)
    .option('--targets <list>', `comma-separated weights (${ALL_LORA_TARGETS.join(',')})`, LORA_TARGETS.join(','))
    .option('--lr <x>', 'peak learning rate', floatArg('--lr'), 2e-4)
    .option('--epochs <n>', 'passes over the data', intArg('--epochs', 1), 1)
    .option('--batch <n>', 'sequences per micro-batch', intArg('--batch', 1), 4)
    .option('--grad-accum <n>', 'micro-batches per optimizer step', intArg('--grad-accum', 1), 1)
    .option('--max-len <n>', 'longest sequence in tokens', intArg('--max-len', 2), 1024)
    .option('--seed <n>', 'seed (data order, initialisation, dropout)', intArg('--seed', 0), 0)
    .option('--warmup-ratio <x>', 'warmup fraction of the steps', floatArg('--warmup-ratio'), 0.03)
    .option('--schedule <kind>', 'cosine | linear | constant', 'cosine')
    .option('--weight-decay <x>', 'AdamW weight decay', floatArg('--weight-decay'), 0)
    .option('--clip <x>', 'max gradient norm (0 = off)', floatArg('--clip'), 1)
    .option('--max-steps <n>', 'stop after N optimizer steps (0 = all)', intArg('--max-steps', 0), 0)
    .option('--checkpoint-every <n>', 'checkpoint every N steps (0 = only at the end)', intArg('--checkpoint-every', 0), 0)
    .option('--checkpoint <file>', 'checkpoint file (default <out>.ckpt)')
    .option('--resume <file>', 'resume from a checkpoint of the same run')
    .option('--log <file>', 'JSON training log (default <out>.log.json)')
    .option('--threads <n>', 'CPU threads (default: physical cores)', intArg('--threads', 1))
    .option('--parse-special', 'tokenize control-token text in the data (<|im_end|>) as control tokens (chat-formatted rows)')
    .option('--checkpointing <mode>', 'activation checkpointing: auto | on | off (auto: on when activations would pass 1/8 of the device memory, at least 256 MiB)', 'auto')
    .option('--memory-limit <bytes>', 'stop before the first step if the memory plan passes this (default: free memory)', intArg('--memory-limit', 0), 0);
}

export function trainOptionsFrom(o: Record<string, any>, onProgress: TrainOptions['onProgress'], signal: AbortSignal): TrainOptions {
  return {
    model: o.model, out: o.out, lora: o.lora, rank: o.rank, alpha: o.alpha, dropout: o.dropout,
    targets: String(o.targets).split(',').map((t) => t.trim()) as LoraTarget[],
    lr: o.lr, epochs: o.epochs, batch: o.batch, gradAccum: o.gradAccum, maxLen: o.maxLen, seed: o.seed,
    warmupRatio: o.warmupRatio, schedule: o.schedule, weightDecay: o.weightDecay, clip: o.clip, maxSteps: o.maxSteps,
    checkpointEvery: o.checkpointEvery, checkpoint: o.checkpoint, resume: o.resume, log: o.log, threads: o.threads, parseSpecial: Boolean(o.parseSpecial),
    checkpointing: o.checkpointing, memoryLimit: o.memoryLimit,
    onProgress, onMemoryPlan: (p) => process.stderr.write(formatMemoryPlan(p) + '\n'), signal,
  };
}

export function registerTrainCommands(program: Command): void {
  const train = program.command('train').description('LoRA training on the native engine');
  addTrainOptions(train.command('sft').description('supervised fine-tuning on {prompt, response} or {content, output} rows'))
    .action(async (o) => {
      const signal = interruptSignal();
      let bar: ReturnType<typeof createProgress> | undefined;
      const result = await trainSft({
        ...trainOptionsFrom(o, (p) => {
          bar ??= createProgress('train', p.totalSteps, 'steps');
          bar.log(`step ${p.step}/${p.totalSteps} epoch ${p.epoch} loss ${p.loss.toFixed(4)} lr ${p.lr.toExponential(2)} ` +
            `grad_norm ${p.gradNorm.toFixed(3)} tokens/s ${p.tokensPerSecond.toFixed(0)}`);
          bar.update(p.step, `loss ${p.loss.toFixed(3)}`);
        }, signal),
        data: o.data,
      }).finally(() => bar?.stop());
      const d = result.data;
      process.stderr.write(`${d.examples} examples of ${d.rows} rows (skipped: ${d.skippedPromptTooLong} prompt too long for --max-len ${o.maxLen}, ` +
        `${d.skippedEmptyResponse} empty response; ${d.truncated} truncated); ${result.steps} steps; adapter ${result.adapter}; log ${result.log}\n`);
    });

  // Preference optimisation: the SFT options plus --beta (DPO) or --lambda (ORPO); `--batch` counts pairs.
  const preference = (kind: 'dpo' | 'orpo', description: string, weight: '--beta' | '--lambda', help: string) =>
    addTrainOptions(train.command(kind).description(description))
      .option(`${weight} <x>`, help, floatArg(weight), 0.1)
      .action(async (o) => {
        const signal = interruptSignal();
        let bar: ReturnType<typeof createProgress> | undefined;
        const onProgress = (p: TrainProgress) => {
          bar ??= createProgress('train', p.totalSteps, 'steps');
          const m = p.metrics ?? {};
          bar.log(`step ${p.step}/${p.totalSteps} epoch ${p.epoch} loss ${p.loss.toFixed(4)} ` +
            `rewards/chosen ${(m['rewards/chosen'] ?? NaN).toFixed(3)} rewards/rejected ${(m['rewards/rejected'] ?? NaN).toFixed(3)} ` +
            `rewards/margins ${(m['rewards/margins'] ?? NaN).toFixed(3)} rewards/accuracies ${(m['rewards/accuracies'] ?? NaN).toFixed(2)} ` +
            `lr ${p.lr.toExponential(2)} grad_norm ${p.gradNorm.toFixed(3)} tokens/s ${p.tokensPerSecond.toFixed(0)}`);
          bar.update(p.step, `loss ${p.loss.toFixed(3)}`);
        };
        const common = { ...trainOptionsFrom(o, onProgress, signal), data: o.data as string };
        const result = await (kind === 'dpo' ? trainDpo({ ...common, beta: o.beta }) : trainOrpo({ ...common, lambda: o.lambda }))
          .finally(() => bar?.stop());
        const d = result.data;
        process.stderr.write(`${d.pairs} pairs (skipped: ${d.skippedIdentical} identical, ${d.skippedEmptyResponse} empty response, ` +
          `${d.skippedPromptTooLong} prompt too long; ${d.truncated} truncated); ${result.steps} steps; adapter ${result.adapter}; log ${result.log}\n`);
      });
  preference('dpo', 'DPO on {prompt, chosen, rejected} or {instruction, input, output: [chosen, rejected]} rows; the reference is the start (--lora)',
    '--beta', 'DPO beta (scale of the implicit reward)');
  preference('orpo', 'ORPO on {prompt, chosen, rejected} or {instruction, input, output: [chosen, rejected]} rows (no reference model)',
    '--lambda', 'ORPO lambda (weight of the odds-ratio term)');
}
