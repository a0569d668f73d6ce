// `w2s info`: what this installation runs on, for bug reports and first-run checks: the package, Node and
// the CPU (with the vector extensions ggml picks kernels by), the native addon that loaded and the llama.cpp
// libraries it uses, ggml's devices and llama.cpp's system line, and the thread counts calibrated on this
// machine, and the GPU variants: which are installed, which one this process loaded and why, and each
// variant's driver library (present or not).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { DRIVER_LIBRARY, findDriver, GPU_BACKENDS } from '../gpu.js';
import { addon, addonLocation, installedVariants, packageRoot } from '../native.js';
import { cacheDir } from '../thread-calibration.js';
import { physicalCores, simdFlags } from '../threads.js';

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Everything `w2s info` reports, as one JSON-serialisable object. */
export function collectInfo(): Record<string, unknown> {
  const root = packageRoot();
  const req = createRequire(path.join(root, 'package.json'));
  // node-llama-cpp exports no ./package.json: walk up from its entry point.
  let nlcDir = path.dirname(req.resolve('node-llama-cpp'));
  while (readJson(path.join(nlcDir, 'package.json'))?.name !== 'node-llama-cpp' && path.dirname(nlcDir) !== nlcDir) nlcDir = path.dirname(nlcDir);
  const loc = addonLocation();
  const calibrations = readJson(path.join(cacheDir(), 'thread-calibration.json')) ?? {};
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  return {
    package: { name: 'weak2strong', version: (readJson(path.join(root, 'package.json'))?.version as string | undefined) ?? 'unknown', root },
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: { model: cpu, logical: os.availableParallelism(), physicalCores: physicalCores(), simd: simdFlags(), memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1) },
    addon: {
      path: loc.addonPath, build: readJson(path.join(path.dirname(loc.addonPath), 'weak2strong.build.json')) ?? null, libDir: loc.libDir,
      variant: loc.variant, reason: loc.reason, installed: installedVariants(), cpuBackend: loc.cpuBackend,
      drivers: Object.fromEntries(GPU_BACKENDS.map((b) => [b, findDriver(DRIVER_LIBRARY[b]) ?? null])),
      pluginLog: loc.loadLog.trim(),
    },
    deviceList: loc.deviceList,
    llamaCpp: {
      nodeLlamaCpp: (readJson(path.join(nlcDir, 'package.json'))?.version as string | undefined) ?? 'unknown',
      release: (readJson(path.join(nlcDir, 'llama', 'llama.cpp.info.json'))?.tag as string | undefined) ?? 'unknown',
      devices: loc.devices.split(',').filter((d) => d !== ''),
      systemInfo: loc.systemInfo.trim(),
    },
    // The training engine's own op check per device: which frozen-base types it can train there.
    training: addon().trainingSupport(),
    threadCalibration: {
      file: path.join(cacheDir(), 'thread-calibration.json'),
      // Entries measured on this CPU model (the key starts with the probe version, then the CPU).
      thisMachine: Object.fromEntries(Object.entries(calibrations).filter(([k]) => k.includes(`|${cpu}|`))),
    },
  };
}

export function registerInfoCommand(program: Command): void {
  program
    .command('info')
    .description('this installation: package, Node, CPU, the native addon and llama.cpp it loaded, devices, calibrated threads')
    .option('--json', 'print it as JSON')
    .action((o: { json?: boolean }) => {
      const info = collectInfo();
      if (o.json) {
        process.stdout.write(JSON.stringify(info, null, 2) + '\n');
        return;
      }
      const i = info as {
        package: { version: string; root: string }; node: string; platform: string;
        cpu: { model: string; logical: number; physicalCores: number; simd: string[]; memoryGiB: number };
        addon: { path: string; build: Record<string, unknown> | null; libDir: string; variant: string; reason: string; installed: string[]; cpuBackend: { source: string; path?: string; note: string }; drivers: Record<string, string | null>; pluginLog: string };
        deviceList: Array<{ name: string; description: string; backend: string; type: string; memoryTotal: number; memoryFree: number }>;
        llamaCpp: { nodeLlamaCpp: string; release: string; devices: string[]; systemInfo: string };
        threadCalibration: { file: string; thisMachine: Record<string, { threads: number }> };
        training: Array<{ device: string; description: string; types: string[] }>;
      };
      const lines = [
        `weak2strong ${i.package.version} (${i.package.root}), Node ${i.node}, ${i.platform}`,
        `CPU: ${i.cpu.model}, ${i.cpu.logical} logical / ${i.cpu.physicalCores} physical cores, ${i.cpu.memoryGiB} GiB; SIMD: ${i.cpu.simd.join(' ') || 'unknown'}`,
        `addon: ${i.addon.path}${i.addon.build ? ` (${JSON.stringify(i.addon.build)})` : ''}`,
        `llama.cpp: ${i.llamaCpp.release} from node-llama-cpp ${i.llamaCpp.nodeLlamaCpp}, libraries in ${i.addon.libDir}`,
        `variant: ${i.addon.variant} (${i.addon.reason}); installed: ${i.addon.installed.join(', ')}; drivers: ${Object.entries(i.addon.drivers).map(([b, d]) => `${b} ${d ?? 'none'}`).join(', ')}`,
        `CPU backend: ${i.addon.cpuBackend.source}${i.addon.cpuBackend.path ? ` ${i.addon.cpuBackend.path}` : ''} (${i.addon.cpuBackend.note})`,
        ...(i.addon.pluginLog ? [`plugins not loaded: ${i.addon.pluginLog.split('\n').join('; ')}`] : []),
        `devices: ${i.deviceList.map((d) => `${d.name} (${d.backend}, ${d.type}${d.memoryTotal ? `, ${(d.memoryTotal / 2 ** 30).toFixed(1)} GiB` : ''})`).join(', ') || 'none'}`,
        `system: ${i.llamaCpp.systemInfo}`,
        ...i.training.map((d) => `training on ${d.device} (${d.description}): frozen bases ${d.types.join(', ') || 'none'}`),
        `calibrated threads (${i.threadCalibration.file}): ${Object.entries(i.threadCalibration.thisMachine).map(([k, v]) => `${k.split('|').at(-1)} → ${v.threads}`).join(', ') || 'none measured yet'}`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });
}
