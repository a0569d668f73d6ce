// A llama-server child process on a loopback port (tests, `w2s bench remote`, adapter hooks), and llama-server's
// LoRA routes: adapters are loaded at start (`--lora FILE`) and their scales set through POST /lora-adapters
// or per request (`lora: [{ id, scale }]` in the body). It does not build the binary: scripts/llama-server.mjs does.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { AbortError, W2sError } from '../errors.js';

export interface LlamaServerOptions {
  /** Path of the llama-server binary. */
  binary: string;
  /** GGUF model to serve. */
  model: string;
  /** Served model name (`--alias`). Defaults to the file name. */
  alias?: string;
  /** Loopback port; 0 picks a free one. Defaults to 0. */
  port?: number;
  /** GGUF adapters loaded at start (ids 0, 1, … in this order). */
  lora?: readonly string[];
  /** Load the adapters with scale 0 (`--lora-init-without-apply`): set them later via setLoraAdapters. */
  loraInitWithoutApply?: boolean;
  /** Sequences served in parallel (`-np`). Defaults to 4. */
  parallel?: number;
  /** KV cells for all sequences (`-c`). Defaults to 2048 × parallel. */
  contextSize?: number;
  threads?: number;
  /** More arguments, passed as they are. */
  args?: readonly string[];
  /** Seconds to wait for /health. Defaults to 120. */
  startTimeout?: number;
  /** Receives the server's log lines (stderr and stdout). */
  onLog?: (line: string) => void;
}

export interface LlamaServer {
  /** `http://127.0.0.1:<port>` (the OpenAI API is under /v1). */
  url: string;
  port: number;
  process: ChildProcess;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export class LlamaServerError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_LLAMA_SERVER', message, options);
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startLlamaServer(o: LlamaServerOptions): Promise<LlamaServer> {
  const port = o.port || await freePort();
  const parallel = o.parallel ?? 4;
  const args = [
    '-m', o.model, '--host', '127.0.0.1', '--port', String(port), '-np', String(parallel), '-c', String(o.contextSize ?? 2048 * parallel),
    ...(o.alias ? ['--alias', o.alias] : []), ...(o.threads ? ['-t', String(o.threads)] : []),
    ...(o.lora ?? []).flatMap((f) => ['--lora', f]), ...(o.loraInitWithoutApply ? ['--lora-init-without-apply'] : []),
    ...(o.args ?? []),
  ];
  const child = spawn(o.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const onData = (d: Buffer) => {
    const text = d.toString();
    log = (log + text).slice(-4000);
    if (o.onLog) for (const line of text.split('\n')) if (line) o.onLog(line);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const gone = new Promise<void>((resolve) => child.on('exit', (code, signal) => {
    exited = { code, signal };
    resolve();
  }));
  child.on('error', (err) => {
    exited ??= { code: -1, signal: null };
    log += `\n${err.message}`;
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (exited) return;
    child.kill(signal);
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  };
  const deadline = Date.now() + (o.startTimeout ?? 120) * 1000;
  for (;;) {
    if (exited) throw new LlamaServerError(`llama-server exited (${exited.signal ?? `code ${exited.code}`}) before it was ready: ${o.binary} ${args.join(' ')}\n${log}`);
    try {
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop('SIGKILL');
      throw new LlamaServerError(`llama-server did not become ready within ${o.startTimeout ?? 120} s\n${log}`);
    }
    await sleep(100);
  }
  return { url, port, process: child, stop };
}

export interface LoraAdapterInfo {
  id: number;
  path: string;
  scale: number;
}

/** GET /lora-adapters: the adapters the server loaded at start, with their current scales. */
export async function listLoraAdapters(baseUrl: string, signal?: AbortSignal): Promise<LoraAdapterInfo[]> {
  const r = await fetch(`${rootOf(baseUrl)}/lora-adapters`, { signal });
  if (!r.ok) throw new LlamaServerError(`GET /lora-adapters answered HTTP ${r.status}: ${await r.text()}`);
  return (await r.json()) as LoraAdapterInfo[];
}

/** POST /lora-adapters: sets the global scale of each listed adapter (the others go to 0). */
export async function setLoraAdapters(baseUrl: string, scales: readonly { id: number; scale: number }[], signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) throw new AbortError();
  const r = await fetch(`${rootOf(baseUrl)}/lora-adapters`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(scales), signal });
  if (!r.ok) throw new LlamaServerError(`POST /lora-adapters answered HTTP ${r.status}: ${await r.text()}`);
}

/** The server root of an API URL (`…/v1` dropped): llama-server's own routes live there. */
function rootOf(url: string): string {
  return url.replace(/\/+$/, '').replace(/\/v1$/, '');
}
