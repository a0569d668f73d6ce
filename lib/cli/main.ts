#!/usr/bin/env node
// The `w2s` command line: parses arguments (commander), runs the library, prints typed errors as one
// actionable line (exit code 2 for bad arguments or input, 1 for other failures, 130 when interrupted).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { W2sError } from '../errors.js';
import { parseGpu } from '../gpu.js';
import { onAddonLoaded } from '../native.js';
import { registerBenchCommands } from './commands-bench.js';
import { registerCpuBackendCommand } from './commands-cpu-backend.js';
import { registerDemoCommand } from './commands-demo.js';
import { registerInferCommands } from './commands-infer.js';
import { registerInfoCommand } from './commands-info.js';
import { registerEvalCommands } from './commands-eval.js';
import { registerLoraCommands } from './commands-lora.js';
import { registerModelCommands } from './commands-model.js';
import { registerRunCommand } from './commands-run.js';
import { registerTrainCommands } from './commands-train.js';

const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '../../../package.json'), 'utf8')) as { version: string };

const program = new Command();
program
  .name('w2s')
  .description('weak2strong: weak-to-strong reasoning on llama.cpp — sampling, scoring, LoRA training, DPO/ORPO')
  .version(pkg.version)
  .showHelpAfterError('(run with --help for usage)')
  // Commander's own usage errors (unknown option, missing or invalid value) would exit 1: they are bad
  // arguments, so 2 (help and --version still exit 0). Set before the subcommands, which inherit it.
  .exitOverride((err) => process.exit(err.exitCode === 1 ? 2 : err.exitCode));
registerModelCommands(program);
registerInferCommands(program);
registerTrainCommands(program);
registerLoraCommands(program);
registerEvalCommands(program);
registerRunCommand(program);
registerDemoCommand(program);
registerBenchCommands(program);
registerInfoCommand(program);
registerCpuBackendCommand(program);

// --gpu on every command: it sets the process's default (W2S_GPU), which every model and trainer load without
// its own `gpu` takes; the first load picks the addon variant (lib/gpu.ts).
(function addGpuOption(cmd: Command): void {
  if (cmd.commands.length === 0 && cmd !== program) {
    cmd.option('--gpu <backend>', "GPU backend: auto (CUDA, then Vulkan, then the CPU), cuda, vulkan, or false for the CPU (default: W2S_GPU or auto)");
  }
  for (const c of cmd.commands) addGpuOption(c);
})(program);
program.hook('preAction', (_root, action) => {
  const g = action.opts().gpu as string | undefined;
  if (g !== undefined) process.env.W2S_GPU = String(parseGpu(g, '--gpu'));
});
// Once per process, on the progress output (stderr): the backend and device the run uses, and why.
onAddonLoaded((loc) => {
  const gpus = loc.deviceList.filter((d) => d.type === 'gpu' || d.type === 'igpu');
  const where = gpus.length ? gpus.map((d) => `${d.name} (${d.description}, ${(d.memoryTotal / 2 ** 30).toFixed(1)} GiB)`).join(', ') : 'the CPU';
  process.stderr.write(`w2s: ${loc.variant} build of llama.cpp on ${where} (${loc.reason})\n`);
});

const USER_ERRORS = new Set(['ERR_W2S_INVALID_ARGUMENT', 'ERR_W2S_FILE_NOT_FOUND', 'ERR_W2S_GGUF_FORMAT', 'ERR_W2S_DATA_FORMAT',
  'ERR_W2S_CONTEXT_OVERFLOW', 'ERR_W2S_UNSUPPORTED_MODEL', 'ERR_W2S_ADAPTER', 'ERR_W2S_CHECKPOINT', 'ERR_W2S_OUTPUT',
  'ERR_W2S_REMOTE_MODEL', 'ERR_W2S_REMOTE_AUTH', 'ERR_W2S_REMOTE_REQUEST', 'ERR_W2S_PARTIAL_RESULTS', 'ERR_W2S_BACKEND_UNAVAILABLE']);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof W2sError) {
    process.stderr.write(`w2s: ${err.message} [${err.code}]\n`);
    process.exitCode = err.code === 'ABORT_ERR' ? 130 : USER_ERRORS.has(err.code) ? 2 : 1;
  } else {
    // An error we did not anticipate: its message, and the stack only on request (it helps a bug report,
    // not a user). Node's own errors (EACCES, ENOSPC …) carry their path and code in the message.
    const e = err as Error;
    process.stderr.write(process.env.W2S_DEBUG ? `w2s: ${e?.stack ?? String(err)}\n` : `w2s: ${e?.message ?? String(err)} (set W2S_DEBUG=1 to see where)\n`);
    process.exitCode = 1;
  }
}
