// Runs test/helpers/load-child.ts over a list of cases in a child process and collects what it printed:
// an abort (exit 134, a GGML_ASSERT) or a hang fails the test that called it instead of killing ava.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildAction, ChildCase, ChildResult } from './load-child.js';

export type { ChildAction, ChildCase, ChildResult };

export interface ChildRun {
  /** Exit code (null when killed by a signal). */
  code: number | null;
  signal: NodeJS.Signals | null;
  results: Map<string, ChildResult>;
  /** The last case the child started: the one that aborted or hung when `code` is not 0. */
  lastStarted: string | undefined;
  stderrTail: string;
  ms: number;
}

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'load-child.js');

export async function runLoadChild(cases: readonly ChildCase[], dir: string, timeoutMs: number): Promise<ChildRun> {
  const list = path.join(dir, `cases-${process.pid}-${Date.now()}.json`);
  fs.writeFileSync(list, JSON.stringify(cases));
  const t0 = performance.now();
  const child = spawn(process.execPath, [CHILD, list], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
  clearTimeout(killer);
  const results = new Map<string, ChildResult>();
  let lastStarted: string | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('START ')) lastStarted = line.slice(6);
    else if (line.startsWith('RESULT ')) {
      const r = JSON.parse(line.slice(7)) as ChildResult;
      results.set(r.id, r);
    }
  }
  return { code, signal, results, lastStarted, stderrTail: stderr, ms: performance.now() - t0 };
}

/** One line saying how a child that did not exit 0 ended. */
export function describeChildEnd(r: ChildRun): string {
  return `child exited ${r.code ?? r.signal} during case ${r.lastStarted ?? '(none)'}; stderr tail:\n${r.stderrTail.slice(-1500)}`;
}
