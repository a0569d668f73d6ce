// `w2s cpu-backend [--build]`: whether a ggml CPU backend built for this machine exists for the installed
// node-llama-cpp libraries, and, with --build, building it (scripts/cpu-backend.mjs: about a minute on 2
// cores, once). `npm install` in a clone does this itself; users of the published tarball, whose install
// script npm skips, run this once. It never loads the addon, so the build it reports is the one the next
// process registers.
import type { Command } from 'commander';
import { cachedCpuBackend, ensureCpuBackend, ggmlIsaOptions, kernelsPhrase } from '../../scripts/cpu-backend.mjs';
import { findPrebuiltLibDir } from '../../scripts/llama-paths.mjs';
import { BackendUnavailableError } from '../errors.js';
import { packageRoot } from '../native.js';

export function registerCpuBackendCommand(program: Command): void {
  program
    .command('cpu-backend')
    .description('the ggml CPU backend built for this machine (faster than the prebuilt variants): its status, or --build it')
    .option('--build', 'build it when missing (cmake and a C/C++ compiler; about a minute on 2 cores, once per CPU and node-llama-cpp)')
    .action(async (o: { build?: boolean }) => {
      const tried: string[] = [];
      const libDir = findPrebuiltLibDir(packageRoot(), tried);
      if (!libDir) throw new BackendUnavailableError(`node-llama-cpp's prebuilt libraries were not found (looked at ${tried.join(', ')}): reinstall the package`);
      const isa = ggmlIsaOptions();
      if (!isa) {
        process.stdout.write(`no CPU backend is built on ${process.platform}-${process.arch} (x86-64 Linux only for now): the prebuilt variants in ${libDir} run\n`);
        return;
      }
      const found = cachedCpuBackend(libDir);
      if (found.lib !== undefined) {
        process.stdout.write(`built: ${found.lib} (${found.stamp.isa.join(' ')}; llama.cpp ${found.stamp.commit.slice(0, 12)}${found.stamp.kernels?.length ? ` ${kernelsPhrase(found.stamp.kernels)}` : ''}; ${found.stamp.seconds.toFixed(0)} s on ${found.stamp.builtAt})\n`);
        return;
      }
      if (!o.build) {
        process.stdout.write(`not built: ${found.why}; the prebuilt variants run\n`);
        return;
      }
      try {
        const lib = await ensureCpuBackend({ libDir, log: (l: string) => process.stderr.write(`${l}\n`) });
        process.stdout.write(`built: ${lib}\n`);
      } catch (err) {
        throw new BackendUnavailableError(`the CPU backend build failed (the prebuilt variants keep running): ${(err as Error).message}`, { cause: err });
      }
    });
}
