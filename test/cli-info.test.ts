// `w2s info`: the installation's facts, as text and as JSON, taken from the loaded addon and the files it
// came from (not restated by hand): the addon file exists, ggml lists the CPU device, the counts are this
// machine's.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addonLocation } from '../lib/native.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/cli/main.js');

test('w2s info --json reports the loaded addon, llama.cpp, devices and this CPU', (t) => {
  const r = spawnSync(process.execPath, [cli, 'info', '--json'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout) as {
    node: string; cpu: { logical: number; physicalCores: number }; addon: { path: string; libDir: string };
    llamaCpp: { release: string; nodeLlamaCpp: string; devices: string[]; systemInfo: string };
    training: Array<{ device: string; types: string[] }>;
  };
  t.is(info.node, process.version);
  t.is(info.cpu.logical, os.availableParallelism());
  t.true(info.cpu.physicalCores >= 1 && info.cpu.physicalCores <= info.cpu.logical);
  t.true(fs.existsSync(info.addon.path));
  t.is(info.addon.path, addonLocation().addonPath);
  t.true(fs.existsSync(info.addon.libDir));
  t.true(info.llamaCpp.devices.includes('CPU'), info.llamaCpp.devices.join(','));
  t.regex(info.llamaCpp.release, /^(v\d+\.\d+\.\d+|b\d+)$/);
  t.regex(info.llamaCpp.nodeLlamaCpp, /^\d+\.\d+\.\d+/);
  t.regex(info.llamaCpp.systemInfo, /CPU/);
  // The engine's op check: on the CPU every base type the trainer accepts, and no activation-only type.
  const cpuTraining = info.training.find((d) => d.device === 'CPU');
  t.truthy(cpuTraining);
  for (const type of ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_K', 'q6_K']) t.true(cpuTraining!.types.includes(type), type);
  t.false(cpuTraining!.types.includes('q8_K'));
  const text = spawnSync(process.execPath, [cli, 'info'], { encoding: 'utf8' });
  t.is(text.status, 0, text.stderr);
  t.regex(text.stdout, /^weak2strong \d+\.\d+\.\d+/);
  t.regex(text.stdout, new RegExp(`devices: ${info.llamaCpp.devices.join(', ')}`));
  t.regex(text.stdout, /training on CPU \(.*\): frozen bases f32, f16, bf16/);
});
