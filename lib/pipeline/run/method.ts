// The weak-to-strong method (method.md §4–§7) as steps of a run folder: pure orchestration over the
// sampler, the trainers and the data layer. Every step's artifacts land in <out>/<step>/ with a manifest.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chatFewShotPrompt, chatPrompt } from '../../data/chat.js';
import { buildFewShotPrompt, formatPrompt, loadProblems, selectDemos, type Id, type Problem } from '../../data/datasets.js';
import { serializeRecords, type PairRecord, type ResultRecord, type SftRecord } from '../../data/formats.js';
import { AbortError, AdapterError, InvalidArgumentError, W2sError } from '../../errors.js';
import type { Generator } from '../../generate/generator.js';
import { exportPeft } from '../../lora/peft.js';
import type { GpuOption } from '../../gpu.js';
import { loadModel, type Model } from '../../model.js';
import { ggufChatTemplate, tokenizerFingerprint } from '../../model/tokenizer-fingerprint.js';
import { RemoteGenerator } from '../../remote/openai.js';
import { trainSft } from '../../train/sft.js';
import { trainDpo, trainOrpo } from '../../train/preference.js';
import { generate } from '../generate.js';
import { greedyAccuracy, majAtK, passAtK, pgr } from '../metrics.js';
import { buildPairs } from '../pairs.js';
import { selectConsistent, type Generation } from '../select.js';
import { buildPreferenceRows, buildSftRows, type RowContext, type TokenFields } from '../token-ids.js';
import { CHAT, type EndpointConfig, type RunConfig, type TrainConfig } from './config.js';
import { fileIdentity, RunFolder, type StepContext, type StepEvents, type StepOutcome } from './steps.js';

export interface RunResult {
  out: string;
  steps: { name: string; skipped: boolean; seconds: number; stats: Record<string, unknown> }[];
  metrics: Record<string, unknown>;
}

const writeJsonl = (file: string, rows: readonly unknown[]) => fs.writeFileSync(file, serializeRecords(rows, 'jsonl'));
const writeJson = (file: string, rows: readonly unknown[]) => fs.writeFileSync(file, serializeRecords(rows, 'json'));
const readJsonl = <T>(file: string): T[] => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T);

async function withModel<T>(file: string, adapter: string | undefined, gpu: GpuOption | undefined, ctx: StepContext | undefined,
  fn: (m: Model, lora: Awaited<ReturnType<Model['loadLora']>> | undefined) => Promise<T>): Promise<T> {
  const m = await loadModel(file, gpu === undefined ? {} : { gpu });
  ctx?.noteDevice(`${m.device} (${m.variant} build)`);
  try {
    return await fn(m, adapter ? await m.loadLora(adapter) : undefined);
  } finally {
    m.dispose();
  }
}

/** Runs an adapter hook (docs/remote.md) through the shell; its output goes to stderr, stdout stays the CLI's. */
function runHook(command: string, cwd: string, env: Record<string, string>, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortError());
    const child = spawn(command, { shell: true, cwd, env: { ...process.env, ...env }, stdio: ['ignore', 2, 2] });
    const onAbort = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => reject(new AdapterError(`adapter hook ${JSON.stringify(command)} could not start: ${err.message}`, { cause: err })));
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) reject(new AbortError());
      else if (code === 0) resolve();
      else reject(new AdapterError(`adapter hook ${JSON.stringify(command)} failed (${sig ? `signal ${sig}` : `exit code ${code}`}) for ${env.W2S_ADAPTER_NAME || 'the base model'}`));
    });
  });
}

export async function runMethod(cfg: RunConfig, events: StepEvents, signal?: AbortSignal): Promise<RunResult> {
  // The run's own signal: the caller's, or the first failed step's (its siblings stop instead of running on).
  const failed = new AbortController();
  const runSignal = signal ? AbortSignal.any([signal, failed.signal]) : failed.signal;
  const run = new RunFolder(cfg.out, events, runSignal, { jobs: cfg.jobs });
  const limit = (ps: Problem[], n: number) => (n > 0 ? ps.slice(0, n) : ps);
  const train1 = limit(await loadProblems(cfg.data.train1, cfg.data.format), cfg.data.limit.train1);
  const train2 = limit(await loadProblems(cfg.data.train2, cfg.data.format), cfg.data.limit.train2);
  const test = limit(await loadProblems(cfg.data.test, cfg.data.format), cfg.data.limit.test);
  const ids = {
    weak: fileIdentity(cfg.weak.model), strong: fileIdentity(cfg.strong.model),
    train1: fileIdentity(cfg.data.train1), train2: fileIdentity(cfg.data.train2), test: fileIdentity(cfg.data.test),
  };
  type Role = 'weak' | 'strong';
  // Chat prompts (prompt.template: chat): every prompt through the prompted model's own template, so both
  // models need one; refused here, before any step runs, rather than in the middle of the run.
  const chat = cfg.prompt.template === CHAT ? { system: cfg.prompt.system } : undefined;
  if (chat) {
    for (const role of ['weak', 'strong'] as const) {
      if (!(await ggufChatTemplate(cfg[role].model))) {
        throw new InvalidArgumentError(`prompt.template is chat, but the ${role} model ${cfg[role].model} has no chat template (no tokenizer.chat_template in its GGUF): ` +
          'use an instruct model that has one, or a plain prompt.template containing {question}');
      }
    }
  }
  /** Step-input entry of chat runs' system message: absent otherwise, so other configs keep their hashes. */
  const chatInput = chat?.system !== undefined ? { system: chat.system } : {};
  // The run's gpu option (config `gpu`), for every model and trainer it opens; not a step input (results do not
  // depend on it beyond float rounding), so old step hashes hold.
  const gpuOption = cfg.gpu === undefined ? {} : { gpu: cfg.gpu };
  // Tokenizer identities: a model trains on generated ids only when it has the generator's (token-ids.ts).
  const fp: Record<Role, string> = { weak: await tokenizerFingerprint(cfg.weak.model), strong: await tokenizerFingerprint(cfg.strong.model) };
  // Vocabulary-only copies of the models, for chat prompts and training rows: loaded on first use.
  const vocabs: Partial<Record<Role, Promise<Model>>> = {};
  const vocab = (role: Role) => (vocabs[role] ??= loadModel(cfg[role].model, { vocabOnly: true, ...(cfg.gpu === undefined ? {} : { gpu: cfg.gpu }) }));
  // Chat runs render per model (zeroShots); their gold records hold the bare question until a training step
  // renders it for the trained model (buildSftRows).
  const zeroShot = (p: Problem) => (chat ? p.question : formatPrompt(p.question, cfg.prompt.template));
  /** Zero-shot prompts of `problems` for `role`: the plain template, or the role's own chat template. */
  const zeroShots = async (role: Role, problems: readonly Problem[]): Promise<string[]> => {
    if (!chat) return problems.map(zeroShot);
    const m = await vocab(role);
    return problems.map((p) => chatPrompt(m, p.question, chat));
  };
  const questionOf = (split: readonly Problem[]) => {
    const byId = new Map(split.map((p) => [String(p.id), p.question] as const));
    return (id: Id) => {
      const q = byId.get(String(id));
      if (q === undefined) throw new W2sError('ERR_W2S_RUN_STATE', `A training record's id ${JSON.stringify(id)} is not a question of its split; the run folder does not match the config's data`);
      return q;
    };
  };
  const rowContext = async (role: Role, split: readonly Problem[]): Promise<RowContext> => ({ model: await vocab(role), fingerprint: fp[role], chat, question: questionOf(split) });
  const gen = { ...cfg.generation, key: cfg.key, template: cfg.prompt.template, ...chatInput };
  /** Options of a generation by `role`; `withIds`: records carry the generated ids (for training on them). */
  const genOptions = (ctx: StepContext, role: Role, withIds = true) => ({
    key: cfg.key, maxTokens: cfg.generation.maxTokens, stop: cfg.generation.stop, parallel: cfg.generation.parallel,
    threads: cfg.generation.threads, attention: cfg.generation.attention, symbolic: cfg.generation.symbolic, signal: ctx.signal,
    ...(chat ? { parseSpecial: true } : {}), ...(withIds ? { tokenizer: fp[role] } : {}),
    onProgress: (p: { finished: number; total: number; tokens: number }) => ctx.progress(p.finished, p.total, `${p.tokens} tokens`),
  });
  /** A record's token fields, only when present. */
  const tokenFields = (r: TokenFields): TokenFields => (r.token_ids && r.tokenizer ? { token_ids: r.token_ids, tokenizer: r.tokenizer } : {});

  /** LoRA SFT of `model` on SFT records; the step's files: adapter.gguf (+ its log and checkpoint). */
  // `split`: the questions the records answer (chat rows are rendered from them for the trained model).
  // train.json holds the rows as trained: the trained model's prompt and response text, and `token_ids`
  // where the response is trained on its generated ids (lib/pipeline/token-ids.ts).
  const sftStep = (priority: number, name: string, model: Role, tc: TrainConfig, split: readonly Problem[], records: () => SftRecord[], upstream: unknown) => run.run({
    name, priority, inputs: { model: ids[model], tc, upstream, template: cfg.prompt.template, ...chatInput },
    async run(ctx) {
      const rows = records();
      const built = buildSftRows(await rowContext(model, split), rows);
      writeJson(path.join(ctx.dir, 'train.json'), built.records);
      const r = await trainSft({
        model: cfg[model].model, out: path.join(ctx.dir, 'adapter.gguf'), data: built.examples,
        ...tc, threads: cfg.generation.threads, signal: ctx.signal, ...(chat ? { parseSpecial: true } : {}), ...gpuOption,
        onProgress: (p) => ctx.progress(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`),
      });
      ctx.noteDevice(r.trainer.backend);
      return { rows: rows.length, ...r.data, generatedIds: built.generatedIds, textRows: built.text, steps: r.steps, firstLoss: r.history[0]?.loss, lastLoss: r.history.at(-1)?.loss };
    },
  });

  /** Greedy zero-shot answers of train_2 by a model (+ adapter): results.jsonl. */
  const answerStep = (priority: number, name: string, model: 'weak' | 'strong', adapter: StepOutcome | undefined, problems: Problem[], split: 'train2' | 'test') => run.run({
    name, priority, inputs: { model: ids[model], adapter: adapter?.hash('adapter.gguf'), data: ids[split], n: problems.length, gen, ...remoteInput(model, adapter) },
    async run(ctx) {
      const prompts = await zeroShots(model, problems);
      const res = await withSource(ctx, model, adapter, (m, lora, partial) => generate(m, problems, prompts, prompts, { ...genOptions(ctx, model, split === 'train2'), lora, partial: partial('results.partial') }));
      const rows = res.map((r) => r[0]!);
      writeJsonl(path.join(ctx.dir, 'results.jsonl'), rows);
      return { questions: rows.length, accuracy: greedyAccuracy(rows.map((r) => r.result)), emptyAnswers: rows.filter((r) => r.pred === '').length };
    },
  });
  const results = (s: StepOutcome) => readJsonl<ResultRecord>(s.file('results.jsonl'));

  // ---- where generation runs: locally, or on the model's endpoint (training is always local) ------------
  /** The endpoint a generation with `model` (+ adapter) uses, or undefined for local generation. */
  const remoteFor = (model: 'weak' | 'strong', adapter: StepOutcome | undefined): EndpointConfig | undefined => {
    const ep = cfg[model].endpoint;
    return ep && !(adapter && ep.adapters === 'local') ? ep : undefined;
  };
  /** Step-input entry for remote generation: absent for local steps, so configs without endpoints keep their hashes. */
  const remoteInput = (model: 'weak' | 'strong', adapter: StepOutcome | undefined) => {
    const ep = remoteFor(model, adapter);
    return ep ? { remote: { model: ep.model, adapters: typeof ep.adapters === 'object' ? { model: ep.adapters.model ?? null } : ep.adapters, extra: ep.extra ?? null } } : {};
  };
  const adapterName = (a: StepOutcome) => `w2s-${a.manifest.step}-${a.hash('adapter.gguf').slice(0, 8)}`;
  /** The adapter each endpoint holds now (hash; null = the base model), as far as this run's hooks set it. */
  const onServer: Record<'weak' | 'strong', string | null | undefined> = { weak: undefined, strong: undefined };
  /**
   * Runs `fn` with the source to generate from: the local model (+ adapter), or a RemoteGenerator once the
   * hook has put the adapter (or the base model) on the server. `partial` names files in the step's scratch
   * for remote steps (resumable), undefined locally.
   */
  const withSource = async <T>(ctx: StepContext, model: 'weak' | 'strong', adapter: StepOutcome | undefined,
    fn: (source: Model | Generator, lora: Awaited<ReturnType<Model['loadLora']>> | undefined, partial: (name: string) => string | undefined) => Promise<T>): Promise<T> => {
    const ep = remoteFor(model, adapter);
    if (!ep) return withModel(cfg[model].model, adapter?.file('adapter.gguf'), cfg.gpu, ctx, (m, lora) => fn(m, lora, () => undefined));
    // An endpoint whose adapter a hook sets serves one adapter at a time: its steps take turns (jobs > 1).
    if (typeof ep.adapters !== 'object') return remoteGenerate(ctx, model, adapter, ep, fn);
    const turn = endpointTurn[model].then(() => remoteGenerate(ctx, model, adapter, ep, fn));
    endpointTurn[model] = turn.then(() => undefined, () => undefined);
    return turn;
  };
  const endpointTurn: Record<'weak' | 'strong', Promise<void>> = { weak: Promise.resolve(), strong: Promise.resolve() };
  const remoteGenerate = async <T>(ctx: StepContext, model: 'weak' | 'strong', adapter: StepOutcome | undefined, ep: EndpointConfig,
    fn: (source: Model | Generator, lora: undefined, partial: (name: string) => string | undefined) => Promise<T>): Promise<T> => {
    let served = ep.model;
    if (typeof ep.adapters === 'object') {
      const want = adapter ? adapter.hash('adapter.gguf') : null;
      if (adapter && ep.adapters.model) served = ep.adapters.model.replaceAll('{name}', adapterName(adapter));
      if (onServer[model] !== want) {
        let peft = '';
        if (adapter && ep.adapters.peft) {
          peft = path.join(cfg.out, '.adapters', adapterName(adapter));
          if (!fs.existsSync(path.join(peft, 'adapter_config.json'))) await exportPeft(adapter.file('adapter.gguf'), cfg[model].model, peft);
        }
        await runHook(ep.adapters.hook, cfg.base ?? process.cwd(), {
          W2S_ROLE: model, W2S_STEP: path.basename(ctx.dir).replace(/^\.tmp-/, '').replace(/-\d+$/, ''), W2S_ENDPOINT: ep.url, W2S_MODEL_NAME: ep.model, W2S_BASE_MODEL: cfg[model].model,
          W2S_ADAPTER_NAME: adapter ? adapterName(adapter) : '', W2S_ADAPTER_GGUF: adapter ? adapter.file('adapter.gguf') : '', W2S_ADAPTER_PEFT: peft,
        }, ctx.signal);
        onServer[model] = want;
      }
    }
    const gen = new RemoteGenerator({ endpoint: ep.url, model: served, apiKeyEnv: ep.apiKeyEnv, concurrency: ep.concurrency, timeout: ep.timeout, retries: ep.retries, extraBody: ep.extra });
    return fn(gen, undefined, (name) => path.join(ctx.scratch(), name));
  };
  const asGeneration = (r: ResultRecord): Generation => ({ id: r.id, prompt: r.prompt, response: r.response, pred: r.pred, result: r.result, gold: r.gold, ...tokenFields(r) });

  // ---- the steps as a graph -----------------------------------------------------------------------------
  // Each step starts when the steps it reads have finished; up to cfg.jobs run at once (RunFolder). Tasks
  // are declared in the method's sequential order and take their priority from it, so jobs: 1 runs them
  // in exactly that order, and more jobs only change when a step runs, never what it computes.
  let declared = 0;
  const tasks: Promise<unknown>[] = [];
  let firstError: { err: unknown } | undefined;
  const task = <D extends readonly unknown[], T>(deps: D, fn: (priority: number, ...v: { -readonly [K in keyof D]: Awaited<D[K]> }) => Promise<T>): Promise<T> => {
    const priority = declared++;
    const p = Promise.all(deps).then((v) => fn(priority, ...(v as { -readonly [K in keyof D]: Awaited<D[K]> })));
    p.catch((err: unknown) => {
      if (firstError) return;
      firstError = { err };
      failed.abort();
    });
    tasks.push(p);
    return p;
  };
  const none = [] as const;

  // ---- Stage I (§4) --------------------------------------------------------------------------------
  const weakSft = task(none, (prio) => sftStep(prio, '01-weak-sft', 'weak', cfg.train.weak, train1, () =>
    train1.map((p) => ({ id: p.id, content: zeroShot(p), output: p.target ?? '' })).filter((r) => r.output !== ''), ids.train1));
  const dWeak = task([weakSft], (prio, w) => answerStep(prio, '02-d-weak', 'weak', w, train2, 'train2'));

  const icl = task([dWeak], (priority, dw) => run.run({
    name: '03-weak-icl', priority, inputs: { strong: ids.strong, dWeak: dw.hash('results.jsonl'), shots: cfg.prompt.shots, demos: cfg.prompt.demos, gen, ...remoteInput('strong', undefined) },
    async run(ctx) {
      const weak = results(dw);
      const pool = weak.map((r, i) => ({ id: r.id, question: train2[i]!.question, answer: r.response }));
      const demos = cfg.prompt.demos.strategy === 'ids'
        ? selectDemos(pool, { strategy: 'ids', ids: cfg.prompt.demos.ids })
        : selectDemos(pool, { strategy: 'random', k: Math.min(cfg.prompt.shots, pool.length), seed: cfg.prompt.demos.seed });
      // Chat: each demonstration is an earlier user turn answered by an assistant turn (chatFewShotPrompt).
      const sv = chat ? await vocab('strong') : undefined;
      const prompts = train2.map((p) => (sv ? chatFewShotPrompt(sv, p.question, demos, chat) : buildFewShotPrompt(p.question, demos, cfg.prompt.template)));
      const recordPrompts = await zeroShots('strong', train2);
      const res = await withSource(ctx, 'strong', undefined, (m, _lora, partial) => generate(m, train2, prompts, recordPrompts, { ...genOptions(ctx, 'strong'), partial: partial('results.partial') }));
      const rows = res.map((r) => r[0]!);
      writeJsonl(path.join(ctx.dir, 'results.jsonl'), rows);
      fs.writeFileSync(path.join(ctx.dir, 'demos.json'), JSON.stringify(demos, null, 2));
      return { questions: rows.length, accuracy: greedyAccuracy(rows.map((r) => r.result)), demoIds: demos.map((d) => d.id) };
    },
  }));

  const selectStep = (priority: number, name: string, a: StepOutcome, b: StepOutcome) => run.run({
    name, priority, inputs: { a: a.hash('results.jsonl'), b: b.hash('results.jsonl'), keepEmpty: cfg.stage1.keepEmpty },
    async run(ctx) {
      const sel = selectConsistent(results(a).map(asGeneration), results(b).map(asGeneration), { keepEmpty: cfg.stage1.keepEmpty });
      for (const set of ['weak', 'icl', 'hybrid'] as const) writeJson(path.join(ctx.dir, `${set}.json`), sel[set]);
      return { ...sel.stats };
    },
  });
  const readSet = (s: StepOutcome, set: string) => JSON.parse(fs.readFileSync(s.file(`${set}.json`), 'utf8')) as SftRecord[];
  const nonEmpty = (s: StepOutcome, set: string) => {
    const rows = readSet(s, set);
    if (rows.length === 0) {
      throw new W2sError('ERR_W2S_EMPTY_SELECTION', `Stage I selected no questions (${s.manifest.step}: ${JSON.stringify(s.manifest.stats)}): ` +
        'the weak and strong answers never agree on a non-empty answer. Check that both models answer in the key\'s format (see 02-d-weak and 03-weak-icl results), or set stage1.keepEmpty.');
    }
    return rows;
  };

  const select1 = task([dWeak, icl], (prio, dw, ic) => selectStep(prio, '04-select-1', dw, ic));
  let mPlus: Promise<StepOutcome>;
  if (cfg.stage1.iterations === 1) {
    mPlus = task([select1], (prio, s1) => sftStep(prio, '05-strong-sft-1', 'strong', cfg.train.strong, train2, () => nonEmpty(s1, cfg.stage1.set), s1.hash(`${cfg.stage1.set}.json`)));
  } else {
    const onWeak = task([select1], (prio, s1) => sftStep(prio, '05-strong-weak-1', 'strong', cfg.train.strong, train2, () => nonEmpty(s1, 'weak'), s1.hash('weak.json')));
    const onIcl = task([select1], (prio, s1) => sftStep(prio, '05-strong-icl-1', 'strong', cfg.train.strong, train2, () => nonEmpty(s1, 'icl'), s1.hash('icl.json')));
    const genWeak = task([onWeak], (prio, a) => answerStep(prio, '06-gen-weak-1', 'strong', a, train2, 'train2'));
    const genIcl = task([onIcl], (prio, a) => answerStep(prio, '06-gen-icl-1', 'strong', a, train2, 'train2'));
    const select2 = task([genWeak, genIcl], (prio, a, b) => selectStep(prio, '07-select-2', a, b));
    mPlus = task([select2], (prio, s2) => sftStep(prio, '08-strong-sft-2', 'strong', cfg.train.strong, train2, () => nonEmpty(s2, cfg.stage1.set), s2.hash(`${cfg.stage1.set}.json`)));
  }

  // ---- baselines --------------------------------------------------------------------------------------
  const fullWeak = cfg.baselines.fullWeakFt
    ? task([dWeak], (prio, dw) => sftStep(prio, '10-full-weak-ft', 'strong', cfg.train.strong, train2, () => results(dw).map((r) => ({ id: r.id, content: r.prompt, output: r.response, ...tokenFields(r) })).filter((r) => r.output !== ''), dw.hash('results.jsonl')))
    : undefined;
  const ceiling = cfg.baselines.ceiling
    ? task(none, (prio) => sftStep(prio, '11-ceiling', 'strong', cfg.train.strong, train2, () => train2.map((p) => ({ id: p.id, content: zeroShot(p), output: p.target ?? '' })).filter((r) => r.output !== ''), ids.train2))
    : undefined;

  // ---- Stage II (§5) ------------------------------------------------------------------------------------
  let mPro: Promise<StepOutcome | undefined> = Promise.resolve(undefined);
  let pairs: Promise<StepOutcome> | undefined;
  if (cfg.stage2.enabled) {
    const s2 = cfg.stage2;
    const sampled = task([mPlus], (priority, mp) => run.run({
      name: '20-stage2-sample', priority, inputs: { strong: ids.strong, mPlus: mp.hash('adapter.gguf'), data: ids.train2, n: train2.length, s2: [s2.samples, s2.temperature, s2.topP, s2.seed], gen, ...remoteInput('strong', mp) },
      async run(ctx) {
        const prompts = await zeroShots('strong', train2);
        const res = await withSource(ctx, 'strong', mp, (m, lora, partial) =>
          generate(m, train2, prompts, prompts, { ...genOptions(ctx, 'strong'), lora, n: s2.samples, temperature: s2.temperature, topP: s2.topP, seed: s2.seed, partial: partial('samples.partial') }));
        writeJsonl(path.join(ctx.dir, 'samples.jsonl'), res.flat());
        return { questions: res.length, samples: res.length * s2.samples, passAtK: passAtK(res.map((r) => r.map((x) => x.result)), s2.samples), majAtK: majAtK(res, s2.samples) };
      },
    }));
    pairs = task([dWeak, sampled], (priority, dw, sm) => run.run({
      name: '21-pairs', priority, inputs: { dWeak: dw.hash('results.jsonl'), samples: sm.hash('samples.jsonl'), rules: [s2.minConfidence, s2.rejectConfidence, s2.pairsPerQuestion, s2.pairSeed] },
      async run(ctx) {
        const weak = results(dw);
        const byId = new Map<string, ResultRecord[]>();
        for (const r of readJsonl<ResultRecord>(sm.file('samples.jsonl'))) byId.set(String(r.id), [...(byId.get(String(r.id)) ?? []), r]);
        // Chat: the pair's prompt is the strong model's rendering (its samples' prompt), not the weak model's.
        const promptOf = (w: ResultRecord) => (chat ? byId.get(String(w.id))?.[0]?.prompt ?? w.prompt : w.prompt);
        const built = buildPairs(weak.map((w) => ({ id: w.id, prompt: promptOf(w), weak: w, samples: byId.get(String(w.id)) ?? [] })), {
          minConfidence: s2.minConfidence, rejectConfidence: s2.rejectConfidence, pairsPerQuestion: s2.pairsPerQuestion, seed: s2.pairSeed,
        });
        writeJson(path.join(ctx.dir, 'pairs.json'), built.pairs);
        return { ...built.stats };
      },
    }));
    mPro = task([mPlus, pairs], async (priority, mp, pr) => {
      const pairRows = JSON.parse(fs.readFileSync(pr.file('pairs.json'), 'utf8')) as PairRecord[];
      if (pairRows.length === 0) return undefined;
      const tc = cfg.train.preference;
      return run.run({
        name: `22-stage2-${s2.algorithm}`, priority,
        inputs: { strong: ids.strong, mPlus: mp.hash('adapter.gguf'), pairs: pr.hash('pairs.json'), tc, beta: s2.beta, lambda: s2.lambda, ...(chat ? { template: CHAT, ...chatInput } : {}) },
        async run(ctx) {
          // Each side on its generated ids where the strong model generated it (its samples; the weak side only
          // with an identical vocabulary), else on its text; chat pairs rendered for the strong model.
          const built = buildPreferenceRows(await rowContext('strong', train2), pairRows);
          const data = built.examples;
          const common = {
            model: cfg.strong.model, lora: mp.file('adapter.gguf'), out: path.join(ctx.dir, 'adapter.gguf'), data, ...tc,
            threads: cfg.generation.threads, signal: ctx.signal, ...(chat ? { parseSpecial: true } : {}), ...gpuOption,
            onProgress: (p: { step: number; totalSteps: number; loss: number }) => ctx.progress(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`),
          };
          const r = s2.algorithm === 'dpo' ? await trainDpo({ ...common, beta: s2.beta }) : await trainOrpo({ ...common, lambda: s2.lambda });
          ctx.noteDevice(r.trainer.backend);
          return { pairs: data.length, generatedIdSides: built.generatedIds, textSides: built.text, steps: r.steps, firstLoss: r.history[0]?.loss, lastLoss: r.history.at(-1)?.loss };
        },
      });
    });
  }

  // ---- evaluation (§7) ---------------------------------------------------------------------------------------
  type EvalStats = { accuracy: number } & Record<string, unknown>;
  const evalStep = (label: string, model: 'weak' | 'strong', adapterStep: Promise<StepOutcome | undefined> | undefined): Promise<EvalStats | undefined> =>
    task([adapterStep ?? Promise.resolve(undefined)], async (priority, adapter) => {
      // A stage that did not run (Stage II without pairs) has nothing to evaluate.
      if (adapterStep && !adapter) return undefined;
      const s = await run.run({
        name: `30-eval-${label}`, priority, inputs: { model: ids[model], adapter: adapter?.hash('adapter.gguf'), data: ids.test, n: test.length, gen, k: cfg.eval.k, ...remoteInput(model, adapter) },
        async run(ctx) {
          const prompts = await zeroShots(model, test);
          return withSource(ctx, model, adapter, async (m, lora, partial) => {
            // Test answers are never trained on: no ids.
            const greedy = (await generate(m, test, prompts, prompts, { ...genOptions(ctx, model, false), lora, partial: partial('greedy.partial') })).map((r) => r[0]!);
            writeJsonl(path.join(ctx.dir, 'results.jsonl'), greedy);
            const stats: Record<string, unknown> = { questions: test.length, accuracy: greedyAccuracy(greedy.map((r) => r.result)) };
            if (cfg.eval.k > 0) {
              const sampled = await generate(m, test, prompts, prompts, { ...genOptions(ctx, model, false), lora, n: cfg.eval.k, temperature: 1, seed: cfg.stage2.seed, partial: partial('sampled.partial') });
              stats[`pass@${cfg.eval.k}`] = passAtK(sampled.map((r) => r.map((x) => x.result)), cfg.eval.k);
              stats[`maj@${cfg.eval.k}`] = majAtK(sampled, cfg.eval.k);
            }
            return stats;
          });
        },
      });
      return s.manifest.stats as EvalStats;
    });
  const evals: [string, Promise<EvalStats | undefined>][] = [
    ['weak', evalStep('weak', 'weak', weakSft)],
    ['strongBase', evalStep('strong-base', 'strong', undefined)],
    ...(fullWeak ? [['fullWeakFt', evalStep('full-weak-ft', 'strong', fullWeak)] as [string, Promise<EvalStats | undefined>]] : []),
    ['stage1', evalStep('stage1', 'strong', mPlus)],
    ...(cfg.stage2.enabled ? [['stage2', evalStep('stage2', 'strong', mPro)] as [string, Promise<EvalStats | undefined>]] : []),
    ...(ceiling ? [['ceiling', evalStep('ceiling', 'strong', ceiling)] as [string, Promise<EvalStats | undefined>]] : []),
  ];

  // Every task settles before the run returns or throws: no step keeps running behind a failure.
  await Promise.allSettled(tasks);
  for (const v of Object.values(vocabs)) await v.then((m) => m.dispose(), () => undefined);
  if (firstError) throw firstError.err;
  const acc: Record<string, Record<string, unknown>> = {};
  for (const [k, p] of evals) {
    const v = await p;
    if (v) acc[k] = v;
  }
  const pairStats = pairs ? (await pairs).manifest.stats : undefined;
  const a = (k: string) => (acc[k] as { accuracy: number } | undefined)?.accuracy;
  // PGR is undefined (null in metrics.json) without a ceiling step, or when the ceiling equals the weak floor.
  const gap = (k: string) => (ceiling !== undefined && a(k) !== undefined && a('ceiling') !== a('weak') ? pgr({ weak: a('weak')!, w2s: a(k)!, ceiling: a('ceiling')! }) : null);
  const metrics = {
    accuracy: Object.fromEntries(Object.entries(acc).map(([k, v]) => [k, v.accuracy])),
    pgr: { fullWeakFt: gap('fullWeakFt'), stage1: gap('stage1'), stage2: gap('stage2') },
    selection: run.steps.filter((s) => /select-\d$/.test(s.manifest.step)).map((s) => ({ step: s.manifest.step, ...s.manifest.stats })),
    pairs: pairStats,
    evaluation: acc,
  };
  const steps = run.steps.map((s) => ({ name: s.manifest.step, skipped: s.skipped, seconds: s.manifest.seconds, stats: s.manifest.stats }));
  const summary = { config: cfg, metrics, steps };
  const tmp = path.join(cfg.out, `.metrics.json.tmp-${process.pid}`);
  fs.writeFileSync(tmp, JSON.stringify(summary, null, 2) + '\n');
  fs.renameSync(tmp, path.join(cfg.out, 'metrics.json'));
  return { out: cfg.out, steps, metrics };
}
