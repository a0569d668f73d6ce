// `w2s lora export`: an adapter in the formats serving engines load — GGUF (llama.cpp, llama-server, Ollama
// ADAPTER) and PEFT (adapter_model.safetensors + adapter_config.json: vLLM, SGLang, TGI, transformers).
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { checkOutputPaths } from '../io/outputs.js';
import { exportPeft, importPeft, readGgufAdapter } from '../lora/peft.js';
import { writeLoraAdapter } from '../lora/adapter-file.js';

export function registerLoraCommands(program: Command): void {
  const lora = program.command('lora').description('LoRA adapter files');
  lora
    .command('export')
    .description('write an adapter (GGUF file or PEFT folder) as PEFT or GGUF for a serving engine')
    .requiredOption('--adapter <path>', 'GGUF adapter file, or PEFT folder (adapter_config.json + adapter_model.safetensors)')
    .requiredOption('--model <file>', 'the GGUF base model the adapter was trained for')
    .requiredOption('--format <f>', 'peft | gguf')
    .requiredOption('--out <path>', 'PEFT: a folder (created); GGUF: a file')
    .option('--base-model-name <name>', 'base_model_name_or_path written into adapter_config.json (PEFT)')
    .action(async (o) => {
      if (o.format !== 'peft' && o.format !== 'gguf') throw InvalidArgumentError.expected('peft or gguf', '--format', o.format);
      const fromPeft = fs.existsSync(o.adapter) && fs.statSync(o.adapter).isDirectory();
      if (o.format === 'peft') {
        if (fromPeft) throw new InvalidArgumentError(`--adapter ${o.adapter} is a PEFT folder already; --format peft exports GGUF adapters`);
        if (fs.existsSync(o.out) && !fs.statSync(o.out).isDirectory()) throw new InvalidArgumentError(`--out ${o.out} is a file; PEFT output is a folder`);
        const st = path.join(o.out, 'adapter_model.safetensors');
        const cf = path.join(o.out, 'adapter_config.json');
        fs.mkdirSync(o.out, { recursive: true });
        await checkOutputPaths([{ name: '--out', path: st, regularFile: true }, { name: '--out', path: cf, regularFile: true }],
          [{ name: '--adapter', path: o.adapter }, { name: '--model', path: o.model }]);
        const r = await exportPeft(o.adapter, o.model, o.out, { baseModelName: o.baseModelName });
        process.stderr.write(`PEFT adapter: ${r.tensors} tensors, r ${r.rank}, lora_alpha ${r.alpha}, target_modules ${r.targetModules.join(', ')} -> ${o.out}\n`);
        return;
      }
      await checkOutputPaths([{ name: '--out', path: o.out, regularFile: true }], [{ name: '--adapter', path: o.adapter }, { name: '--model', path: o.model }]);
      if (fromPeft) {
        const r = await importPeft(o.adapter, o.model, o.out);
        process.stderr.write(`GGUF adapter: ${r.tensors} tensors, r ${r.rank}, alpha ${r.alpha} -> ${o.out}\n`);
      } else {
        // GGUF to GGUF: a checked, normalised copy (F32 tensors, llama.cpp's names).
        const a = await readGgufAdapter(o.adapter);
        await writeLoraAdapter(o.out, { architecture: a.architecture, alpha: a.alpha, tensors: a.pairs });
        process.stderr.write(`GGUF adapter: ${a.pairs.length * 2} tensors, alpha ${a.alpha} -> ${o.out}\n`);
      }
    });
}
