// A real llama-server for the remote-generation tests: the binary is built once from deps/llama.cpp and
// cached outside the clone (scripts/llama-server.mjs, which prints when it builds), and a fault-injecting
// loopback proxy that sits between the client and the server.
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ExecutionContext } from 'ava';
import { startLlamaServer, type LlamaServer, type LlamaServerOptions } from '../../lib/remote/llama-server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The llama-server binary, building it when the cache has none (call from test.before: allows 60 min). */
export async function llamaServerBinary(t: ExecutionContext): Promise<string> {
  const mod = await import(pathToFileURL(path.join(root, 'scripts', 'llama-server.mjs')).href) as {
    cachedServer(): string | undefined;
    ensureLlamaServer(o: { log: (l: string) => void }): Promise<string>;
  };
  const cached = mod.cachedServer();
  if (cached) return cached;
  t.timeout(60 * 60_000, 'building llama-server');
  const started = Date.now();
  const bin = await mod.ensureLlamaServer({ log: (l) => process.stderr.write(`[remote tests] ${l}\n`) });
  t.log(`built llama-server in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return bin;
}

export function startServer(binary: string, model: string, o: Partial<LlamaServerOptions> = {}): Promise<LlamaServer> {
  return startLlamaServer({ binary, model, alias: 'tiny', parallel: 4, contextSize: 4096, threads: 1, ...o });
}

export type Fault = 'pass' | 'hang' | 'reset' | { status: number; body?: string; retryAfter?: number };

export interface FaultProxy {
  url: string;
  /** Requests seen, in order: path and parsed JSON body. */
  seen: { path: string; body: any; fault: Fault }[];
  /** Decides per request; default: pass everything through. */
  plan: (req: { path: string; body: any; index: number }) => Fault;
  /** Where requests go; may change (a restarted server on another port). */
  upstream: string;
  close(): Promise<void>;
}

/** A loopback HTTP proxy that forwards to `upstream` unless `plan` injects a fault. */
export async function faultProxy(upstream: string): Promise<FaultProxy> {
  const hung = new Set<http.ServerResponse>();
  const proxy: FaultProxy = {
    url: '', seen: [], plan: () => 'pass', upstream,
    close: () => new Promise((resolve) => {
      for (const r of hung) r.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString();
    let body: any;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = raw;
    }
    const fault = proxy.plan({ path: req.url ?? '', body, index: proxy.seen.length });
    proxy.seen.push({ path: req.url ?? '', body, fault });
    if (fault === 'hang') {
      hung.add(res);
      res.on('close', () => hung.delete(res));
      return;
    }
    if (fault === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault !== 'pass') {
      res.writeHead(fault.status, { 'content-type': 'application/json', ...(fault.retryAfter !== undefined ? { 'retry-after': String(fault.retryAfter) } : {}) });
      res.end(fault.body ?? JSON.stringify({ error: { code: fault.status, message: `injected ${fault.status}` } }));
      return;
    }
    try {
      const r = await fetch(`${proxy.upstream}${req.url}`, { method: req.method, headers: { 'content-type': 'application/json' }, body: raw || undefined });
      const text = await r.text();
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
      res.end(text);
    } catch {
      // The upstream is down: look like it (the connection drops).
      req.socket.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return proxy;
}
