// Generation on a serving engine through the OpenAI-compatible completions API (POST {base}/completions), as
// llama-server, vLLM, SGLang, TGI and Ollama serve it. Owns requests, bounded concurrency, retries with
// backoff and jitter, per-request timeouts and typed errors; persisting results is the caller's (onSample).
import { ContextOverflowError, AbortError, InvalidArgumentError } from '../errors.js';
import type { GeneratedSample, GenerationOptions, Generator } from '../generate/generator.js';
import * as v from '../validate.js';
import { RemoteAuthError, RemoteModelNotFoundError, RemoteRequestError, RemoteUnavailableError } from './errors.js';
import { requestSeed } from './seed.js';

/** Engines told apart by GET /models (`owned_by`), for the sampler settings each needs to match the local sampler. */
export type RemoteEngine = 'llama.cpp' | 'vllm' | 'sglang' | 'ollama' | 'tgi' | 'openai' | 'unknown';

export interface RemoteGeneratorOptions {
  /** Base URL of the API, e.g. `http://host:8080/v1` (`/v1` is appended when missing; a trailing `/completions` is dropped). */
  endpoint: string;
  /** The served model's name (the request's `model`; also checked against GET /models). */
  model: string;
  /** Environment variable holding the API key, sent as `Authorization: Bearer`. Defaults to `W2S_API_KEY`; unset = no key. */
  apiKeyEnv?: string;
  /** Requests in flight at most. Defaults to 8. */
  concurrency?: number;
  /** Seconds one request may take before it is abandoned and retried. Defaults to 600. */
  timeout?: number;
  /** Retries of a request after a 429, 5xx, timeout or connection error. Defaults to 6. */
  retries?: number;
  /** First backoff in seconds (doubled per retry, full jitter, at most maxBackoff). Defaults to 0.5. */
  backoff?: number;
  /** Defaults to 30 seconds. */
  maxBackoff?: number;
  /** Which engine serves; 'auto' reads it from GET /models. Defaults to 'auto'. */
  engine?: RemoteEngine | 'auto';
  /** Ask for per-token log-probs (`logprobs: 1`) and return them as `logprobs`. Defaults to false. */
  logprobs?: boolean;
  /**
   * Ask for a prompt's n samples in one request (`n`, seed from (seed, prompt)) instead of one request per
   * sample (seed from (seed, prompt, sample)). Fewer requests, but the draws then depend on the engine's
   * handling of `n`, and a request lost loses all n. Defaults to false.
   */
  groupSamples?: boolean;
  /** Fields added to every request body (engine extensions); they override the defaults sent. */
  extraBody?: Record<string, unknown>;
  /** Called before each retry (for logs): never given the API key. */
  onRetry?: (info: { promptIndex: number; attempt: number; delay: number; reason: string }) => void;
}

export interface RemoteServerInfo {
  engine: RemoteEngine;
  /** Model ids GET /models listed (empty when the server has no such route). */
  models: string[];
  /** Context per sequence when the server says (llama-server `meta.n_ctx`, vLLM `max_model_len`). */
  contextSize?: number;
}

export const REMOTE_DEFAULTS = { apiKeyEnv: 'W2S_API_KEY', concurrency: 8, timeout: 600, retries: 6, backoff: 0.5, maxBackoff: 30 } as const;

/** `http://h:8080` → `http://h:8080/v1`; `…/v1/completions/` → `…/v1`. */
export function normalizeEndpoint(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw InvalidArgumentError.expected('http(s) URL', 'endpoint', endpoint);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw InvalidArgumentError.expected('http(s) URL', 'endpoint', endpoint);
  let p = url.pathname.replace(/\/+$/, '').replace(/\/completions$/, '');
  if (!p.endsWith('/v1')) p += '/v1';
  url.pathname = p;
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/$/, '');
}

/** Why a failed attempt may be retried, or undefined when it may not. */
type Attempt = { ok: true; body: unknown } | { ok: false; retry: boolean; status?: number; reason: string; retryAfter?: number; message?: string };

const sleep = (ms: number, signal?: AbortSignal) => new Promise<void>((resolve, reject) => {
  if (signal?.aborted) return reject(new AbortError());
  const t = setTimeout(() => {
    signal?.removeEventListener('abort', onAbort);
    resolve();
  }, ms);
  const onAbort = () => {
    clearTimeout(t);
    reject(new AbortError());
  };
  signal?.addEventListener('abort', onAbort, { once: true });
});

function errorText(body: unknown, raw: string): string {
  const e = (body as { error?: unknown; message?: unknown; detail?: unknown } | undefined);
  const inner = e && typeof e === 'object' ? (e.error ?? e.message ?? e.detail) : undefined;
  const msg = typeof inner === 'string' ? inner : inner && typeof inner === 'object' && typeof (inner as { message?: unknown }).message === 'string'
    ? (inner as { message: string }).message : raw;
  return msg.length > 300 ? `${msg.slice(0, 297)}...` : msg;
}

function engineOf(ownedBy: string | undefined): RemoteEngine {
  const o = (ownedBy ?? '').toLowerCase();
  if (o === 'llamacpp' || o === 'llama.cpp') return 'llama.cpp';
  if (o === 'vllm') return 'vllm';
  if (o === 'sglang') return 'sglang';
  if (o === 'library' || o === 'ollama') return 'ollama';
  if (o === 'openai' || o === 'system') return 'openai';
  if (o.includes('text-generation-inference') || o === 'tgi') return 'tgi';
  return 'unknown';
}

interface Choice {
  text?: unknown;
  index?: unknown;
  finish_reason?: unknown;
  stop_reason?: unknown;
  logprobs?: { token_logprobs?: unknown; content?: unknown } | null;
}

export class RemoteGenerator implements Generator {
  readonly endpoint: string;
  readonly model: string;
  readonly description: string;
  readonly #o: Required<Pick<RemoteGeneratorOptions, 'concurrency' | 'timeout' | 'retries' | 'backoff' | 'maxBackoff'>> & RemoteGeneratorOptions;
  readonly #apiKey: string | undefined;
  #info: Promise<RemoteServerInfo> | undefined;

  constructor(options: RemoteGeneratorOptions) {
    if (typeof options !== 'object' || options === null) throw InvalidArgumentError.expected('options object', 'options', options);
    this.endpoint = normalizeEndpoint(options.endpoint);
    this.model = v.nonEmptyString('model', options.model);
    this.#o = {
      ...options,
      concurrency: v.integer('concurrency', options.concurrency ?? REMOTE_DEFAULTS.concurrency, 1, 4096),
      timeout: v.numberIn('timeout', options.timeout ?? REMOTE_DEFAULTS.timeout, 0, 86_400, true),
      retries: v.integer('retries', options.retries ?? REMOTE_DEFAULTS.retries, 0, 1000),
      backoff: v.numberIn('backoff', options.backoff ?? REMOTE_DEFAULTS.backoff, 0, 3600),
      maxBackoff: v.numberIn('maxBackoff', options.maxBackoff ?? REMOTE_DEFAULTS.maxBackoff, 0, 3600),
    };
    const keyEnv = options.apiKeyEnv ?? REMOTE_DEFAULTS.apiKeyEnv;
    v.nonEmptyString('apiKeyEnv', keyEnv);
    this.#apiKey = process.env[keyEnv] || undefined;
    // The URL may carry credentials (user:pass@): never print them.
    const shown = new URL(this.endpoint);
    shown.username = '';
    shown.password = '';
    this.description = `remote ${this.model} at ${shown.toString().replace(/\/$/, '')}`;
  }

  #headers(): Record<string, string> {
    const h: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.#apiKey) h.authorization = `Bearer ${this.#apiKey}`;
    return h;
  }

  /** One HTTP attempt under the per-request timeout; classifies the outcome. */
  async #attempt(method: 'GET' | 'POST', route: string, body: unknown, signal: AbortSignal | undefined): Promise<Attempt> {
    const timeout = AbortSignal.timeout(this.#o.timeout * 1000);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let status: number;
    let raw: string;
    let retryAfter: number | undefined;
    try {
      const res = await fetch(`${this.endpoint}${route}`, { method, headers: this.#headers(), body: body === undefined ? undefined : JSON.stringify(body), signal: combined });
      status = res.status;
      const ra = Number(res.headers.get('retry-after'));
      retryAfter = Number.isFinite(ra) && ra >= 0 ? ra : undefined;
      raw = await res.text();
    } catch (err) {
      if (signal?.aborted) throw new AbortError();
      if (timeout.aborted) return { ok: false, retry: true, reason: `no answer within ${this.#o.timeout} s` };
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      return { ok: false, retry: true, reason: `connection failed (${cause?.code ?? cause?.message ?? (err as Error).message})` };
    }
    let parsed: unknown;
    try {
      parsed = raw === '' ? undefined : JSON.parse(raw);
    } catch {
      parsed = undefined;
    }
    if (status >= 200 && status < 300) {
      if (parsed === undefined) return { ok: false, retry: true, status, reason: `HTTP ${status} with a body that is not JSON` };
      return { ok: true, body: parsed };
    }
    const message = errorText(parsed, raw);
    const retry = status === 408 || status === 409 || status === 425 || status === 429 || status >= 500;
    return { ok: false, retry, status, retryAfter, message, reason: `HTTP ${status}${message ? `: ${message}` : ''}` };
  }

  /** An attempt with retries; a final failure becomes a typed error naming `what`. */
  async #request(method: 'GET' | 'POST', route: string, body: unknown, promptIndex: number, what: string, signal: AbortSignal | undefined): Promise<Attempt> {
    let last: Attempt | undefined;
    for (let attempt = 0; ; attempt++) {
      const r = await this.#attempt(method, route, body, signal);
      if (r.ok || !r.retry) return r;
      last = r;
      if (attempt >= this.#o.retries) break;
      // Full jitter: uniform in [0, min(max, base·2^attempt)]; a Retry-After from the server is a floor.
      const cap = Math.min(this.#o.maxBackoff, this.#o.backoff * 2 ** attempt);
      const delay = Math.max(Math.random() * cap, Math.min(r.retryAfter ?? 0, this.#o.maxBackoff));
      this.#o.onRetry?.({ promptIndex, attempt: attempt + 1, delay, reason: r.reason });
      await sleep(delay * 1000, signal);
    }
    throw new RemoteUnavailableError(`${this.description}: ${what} failed ${this.#o.retries + 1} times; last: ${(last as { reason: string }).reason}`);
  }

  /** GET /models, once: the engine, and whether the model is served (RemoteModelNotFoundError if not). */
  info(signal?: AbortSignal): Promise<RemoteServerInfo> {
    this.#info ??= this.#fetchInfo(signal).catch((err) => {
      this.#info = undefined;
      throw err;
    });
    return this.#info;
  }

  async #fetchInfo(signal?: AbortSignal): Promise<RemoteServerInfo> {
    const r = await this.#request('GET', '/models', undefined, -1, 'GET /models', signal);
    const forced = this.#o.engine && this.#o.engine !== 'auto' ? this.#o.engine : undefined;
    if (!r.ok) {
      if (r.status === 401 || r.status === 403) throw this.#authError(r.status);
      // Servers without the route (some TGI versions) still serve completions: skip the check.
      return { engine: forced ?? 'unknown', models: [] };
    }
    const data = (r.body as { data?: unknown }).data;
    const list = Array.isArray(data) ? data as { id?: unknown; aliases?: unknown; owned_by?: unknown; meta?: { n_ctx?: unknown }; max_model_len?: unknown }[] : [];
    const names = (m: (typeof list)[number]) => [m.id, ...(Array.isArray(m.aliases) ? m.aliases : [])].filter((x): x is string => typeof x === 'string');
    const models = list.flatMap(names);
    const mine = list.find((m) => names(m).includes(this.model));
    if (list.length > 0 && !mine) {
      throw new RemoteModelNotFoundError(`${this.description}: the server does not serve a model named "${this.model}"; it serves ${models.map((m) => JSON.stringify(m)).join(', ')}`, this.model);
    }
    const ctx = Number(mine?.meta?.n_ctx ?? mine?.max_model_len);
    return { engine: forced ?? engineOf(typeof (mine ?? list[0])?.owned_by === 'string' ? String((mine ?? list[0])!.owned_by) : undefined), models, contextSize: Number.isFinite(ctx) && ctx > 0 ? ctx : undefined };
  }

  #authError(status: number): RemoteAuthError {
    const env = this.#o.apiKeyEnv ?? REMOTE_DEFAULTS.apiKeyEnv;
    return new RemoteAuthError(`${this.description} refused the request with HTTP ${status}: ${this.#apiKey ? `check the API key in $${env}` : `it needs an API key: set $${env}`}`);
  }

  /** Body fields that make the engine's sampler the local one's: no top-k / min-p unless asked. */
  static samplerFields(engine: RemoteEngine, topK: number): Record<string, unknown> {
    switch (engine) {
      case 'llama.cpp':
        // llama-server defaults to top_k 40 and min_p 0.05; `verbose` adds stop_type (EOS vs stop string).
        return { top_k: topK, min_p: 0, verbose: true };
      case 'vllm':
      case 'sglang':
        // Both may take sampler defaults from the model's generation_config: override them.
        return { top_k: topK > 0 ? topK : -1, min_p: 0 };
      default:
        return topK > 0 ? { top_k: topK } : {};
    }
  }

  async sample(prompts: readonly string[], o: GenerationOptions = {}): Promise<GeneratedSample[]> {
    v.stringArray('prompts', prompts, true);
    const n = v.integer('n', o.n ?? 1, 1, 1 << 16);
    const temperature = v.numberIn('temperature', o.temperature ?? 1, 0, 100);
    const topP = v.numberIn('topP', o.topP ?? 1, 0, 1, true);
    const topK = v.nonNegativeInt('topK', o.topK ?? 0);
    const seed = v.integer('seed', o.seed ?? 0, 0);
    const maxTokens = v.positiveInt('maxTokens', o.maxTokens ?? 256);
    const stop = v.stringArray('stop', o.stop ?? []);
    const signal = v.abortSignal('signal', o.signal);
    if (signal?.aborted) throw new AbortError();
    const total = prompts.length * n;
    if (total === 0) return [];

    // Samples already known are kept; the rest become requests (one per sample, or one per prompt).
    const results = new Map<number, GeneratedSample>();
    let tokens = 0;
    for (let p = 0; p < prompts.length; p++) {
      for (let s = 0; s < n; s++) {
        const k = o.known?.(p, s);
        if (k) {
          results.set(p * n + s, k);
          tokens += k.tokens;
        }
      }
    }
    if (results.size === total) return this.#ordered(results, total);

    const info = await this.info(signal);
    if (topK > 0 && (info.engine === 'openai' || info.engine === 'ollama' || info.engine === 'tgi')) {
      throw new InvalidArgumentError(`topK ${topK}: ${this.description} (${info.engine}) has no top_k in its completions API; use topK 0`);
    }
    const group = this.#o.groupSamples === true && n > 1;
    const jobs: { p: number; samples: number[] }[] = [];
    for (let p = 0; p < prompts.length; p++) {
      const missing = Array.from({ length: n }, (_, s) => s).filter((s) => !results.has(p * n + s));
      if (missing.length === 0) continue;
      if (group) jobs.push({ p, samples: missing });
      else for (const s of missing) jobs.push({ p, samples: [s] });
    }

    const base: Record<string, unknown> = {
      model: this.model, max_tokens: maxTokens, temperature, top_p: topP, ...(stop.length ? { stop } : {}),
      // Grouped answers carry one usage for all choices: per-choice token counts come from the logprob lists.
      ...RemoteGenerator.samplerFields(info.engine, topK), ...(this.#o.logprobs || group ? { logprobs: 1 } : {}), ...this.#o.extraBody,
    };
    const inner = new AbortController();
    const stopAll = signal ? AbortSignal.any([signal, inner.signal]) : inner.signal;
    let next = 0;
    let failure: unknown;
    const progress = () => o.onProgress?.({ tokens, finished: results.size, total });
    progress();

    const runJob = async (job: { p: number; samples: number[] }) => {
      const body = group
        ? { ...base, prompt: prompts[job.p], n: job.samples.length, seed: requestSeed(seed, job.p, -1) }
        : { ...base, prompt: prompts[job.p], n: 1, seed: requestSeed(seed, job.p, job.samples[0]!) };
      const r = await this.#request('POST', '/completions', body, job.p, `prompt ${job.p}`, stopAll);
      if (!r.ok) throw this.#requestError(r, job.p, info);
      const samples = this.#parse(r.body, job, info);
      for (const s of samples) {
        results.set(s.promptIndex * n + s.sampleIndex, s);
        tokens += s.tokens;
        await o.onSample?.(s);
      }
      progress();
    };
    const worker = async () => {
      while (failure === undefined && next < jobs.length) {
        const job = jobs[next++]!;
        try {
          await runJob(job);
        } catch (err) {
          if (failure === undefined) failure = err;
          inner.abort();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.concurrency, jobs.length) }, worker));
    if (failure !== undefined) {
      // Our own abort (after another request's failure) surfaces as that failure, not as AbortError.
      throw signal?.aborted ? new AbortError() : failure;
    }
    return this.#ordered(results, total);
  }

  #ordered(results: Map<number, GeneratedSample>, total: number): GeneratedSample[] {
    const out: GeneratedSample[] = [];
    for (let i = 0; i < total; i++) out.push(results.get(i)!);
    return out;
  }

  #requestError(r: Extract<Attempt, { ok: false }>, p: number, info: RemoteServerInfo): Error {
    const status = r.status ?? 0;
    const msg = r.message ?? '';
    if (status === 401 || status === 403) return this.#authError(status);
    if (status === 404 && /model/i.test(msg)) {
      return new RemoteModelNotFoundError(`${this.description}: prompt ${p}: the server does not serve "${this.model}" (HTTP 404: ${msg})`, this.model);
    }
    if (/context|too long|maximum.*length|exceed/i.test(msg)) {
      return new ContextOverflowError(`prompt ${p} does not fit the context of ${this.description}${info.contextSize ? ` (${info.contextSize} tokens per sequence)` : ''}: ${msg}`);
    }
    return new RemoteRequestError(`${this.description}: prompt ${p}: HTTP ${status}: ${msg}`, status, p);
  }

  /** Samples of one answer. Token counts leave EOS out, as the local sampler's do. */
  #parse(body: unknown, job: { p: number; samples: number[] }, info: RemoteServerInfo): GeneratedSample[] {
    const b = body as { choices?: Choice[]; usage?: { completion_tokens?: unknown }; __verbose?: { stop_type?: unknown; tokens_predicted?: unknown } };
    const choices = Array.isArray(b.choices) ? b.choices : [];
    if (choices.length !== job.samples.length) {
      throw new RemoteRequestError(`${this.description}: prompt ${job.p}: expected ${job.samples.length} choice(s) but the answer holds ${choices.length}`, 200, job.p);
    }
    const sorted = [...choices].sort((a, c) => Number(a.index ?? 0) - Number(c.index ?? 0));
    return sorted.map((c, i) => {
      if (typeof c.text !== 'string') throw new RemoteRequestError(`${this.description}: prompt ${job.p}: a choice has no text`, 200, job.p);
      const lp = this.#logprobs(c, choices.length > 1);
      let finish: GeneratedSample['finishReason'] = c.finish_reason === 'length' ? 'length' : 'stop';
      if (finish === 'stop') {
        if (info.engine === 'llama.cpp' && typeof b.__verbose?.stop_type === 'string' && choices.length === 1) finish = b.__verbose.stop_type === 'eos' ? 'eos' : 'stop';
        else if ('stop_reason' in c) finish = typeof c.stop_reason === 'string' ? 'stop' : 'eos'; // vLLM, SGLang: the matched string, or null/EOS id
      }
      // One request per sample: usage is this sample's. llama.cpp and vLLM count the EOS token; we do not.
      let count = choices.length === 1 ? Number(b.usage?.completion_tokens) : lp ? lp.length : NaN;
      if (!Number.isFinite(count)) count = 0;
      if (finish === 'eos' && count > 0 && (info.engine === 'llama.cpp' || info.engine === 'vllm' || info.engine === 'sglang')) count -= 1;
      const s: GeneratedSample = { promptIndex: job.p, sampleIndex: job.samples[i]!, text: c.text, tokens: count, finishReason: finish };
      if (lp && this.#o.logprobs) s.logprobs = lp;
      return s;
    });
  }

  #logprobs(c: Choice, force: boolean): number[] | undefined {
    if ((!this.#o.logprobs && !force) || !c.logprobs) return undefined;
    if (Array.isArray(c.logprobs.token_logprobs)) return c.logprobs.token_logprobs.map(Number); // OpenAI completions shape (vLLM)
    if (Array.isArray(c.logprobs.content)) return (c.logprobs.content as { logprob?: unknown }[]).map((t) => Number(t.logprob)); // llama-server
    return undefined;
  }
}
