// `w2s model create` and `w2s model info`.
import type { Command } from 'commander';
import { createModel, MODEL_ARCHS, type ModelArch, type ModelTensorType } from '../model/create.js';
import { loadModel } from '../model.js';
import { intArg, floatArg } from './args.js';

export function registerModelCommands(program: Command): void {
  const model = program.command('model').description('create and inspect GGUF models');
  model
    .command('create')
    .description('write a random-initialised GGUF with a working tokenizer (for tests and benchmarks)')
    .requiredOption('--arch <arch>', MODEL_ARCHS.join(' | '))
    .requiredOption('--layers <n>', 'transformer blocks', intArg('--layers', 1))
    .requiredOption('--embd <n>', 'hidden size', intArg('--embd', 1))
    .requiredOption('--heads <n>', 'attention heads', intArg('--heads', 1))
    .option('--kv-heads <n>', 'key/value heads (defaults to --heads)', intArg('--kv-heads', 1))
    .requiredOption('--ff <n>', 'feed-forward size', intArg('--ff', 1))
    .option('--ctx <n>', 'training context length', intArg('--ctx', 1), 2048)
    .option('--vocab <n>', 'pad the tokenizer with extra pieces to exactly N tokens', intArg('--vocab', 1))
    .option('--vocab-from <file>', 'copy the tokenizer of this GGUF (a real model or a vocabulary-only file)')
    .option('--type <type>', 'weight type: f32 | f16 | q8_0 | q4_0', 'f32')
    .option('--seed <n>', 'random seed', intArg('--seed', 0), 0)
    .option('--rope-theta <x>', 'rope frequency base', floatArg('--rope-theta'))
    .option('--sliding-window <n>', 'attention window, tokens (gemma2: every other layer, default 4096; phi3: declared only)', intArg('--sliding-window', 0))
    .option('--attn-softcap <x>', 'gemma2 attention logit soft-cap (default 50)', floatArg('--attn-softcap'))
    .option('--final-softcap <x>', 'gemma2 final logit soft-cap (default 30)', floatArg('--final-softcap'))
    .requiredOption('--out <file>', 'output GGUF')
    .action(async (o) => {
      const info = await createModel({
        arch: o.arch as ModelArch, layers: o.layers, embd: o.embd, heads: o.heads, kvHeads: o.kvHeads ?? o.heads,
        ff: o.ff, ctx: o.ctx, vocab: o.vocab, vocabFrom: o.vocabFrom, type: o.type as ModelTensorType, seed: o.seed, out: o.out, ropeTheta: o.ropeTheta,
        slidingWindow: o.slidingWindow, attnSoftcap: o.attnSoftcap, finalSoftcap: o.finalSoftcap,
      });
      process.stdout.write(JSON.stringify(info) + '\n');
    });
  model
    .command('info')
    .description('print what llama.cpp reads from a GGUF model')
    .requiredOption('--model <file>', 'GGUF model')
    .action(async (o) => {
      const m = await loadModel(o.model, { vocabOnly: false });
      try {
        process.stdout.write(JSON.stringify({ info: m.info, metadata: m.metadata() }, null, 2) + '\n');
      } finally {
        m.dispose();
      }
    });
}
