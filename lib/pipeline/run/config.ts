// The `w2s run` config: one JSON or YAML file naming the weak and strong GGUF models, the dataset files and
// the options of every step, validated with zod. Defaults are the paper's (method.md); unknown keys are
// errors that suggest the closest known key.
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { InvalidArgumentError } from '../../errors.js';

const train = z.strictObject({
  rank: z.int().min(1).default(8),
  alpha: z.number().positive().default(16),
  dropout: z.number().min(0).max(0.99).default(0),
  lr: z.number().positive().default(2e-4),
  epochs: z.int().min(1).default(1),
  batch: z.int().min(1).default(4),
  gradAccum: z.int().min(1).default(1),
  maxLen: z.int().min(2).default(1024),
  warmupRatio: z.number().min(0).max(1).default(0.03),
  schedule: z.enum(['cosine', 'linear', 'constant']).default('cosine'),
  seed: z.int().min(0).default(0),
  // Memory only (results do not depend on them): optional, so that runs without them keep their step hashes.
  /** Activation checkpointing: auto (default) | on | off (docs/training-engine.md). */
  checkpointing: z.enum(['auto', 'on', 'off']).optional(),
  /** Bytes a training step may use; past it a step stops with OutOfMemoryError before training. 0 = free memory. */
  memoryLimit: z.int().min(0).optional(),
});
const trainDefaults = train.parse({});

/**
 * Generation on an OpenAI-compatible server (docs/remote.md); training stays local on `model`. The API key
 * is read from the environment variable `apiKeyEnv` at run time and never stored.
 */
const endpoint = z.strictObject({
  url: z.url({ protocol: /^https?$/ }),
  /** The served model's name. */
  model: z.string().min(1),
  apiKeyEnv: z.string().min(1).default('W2S_API_KEY'),
  concurrency: z.int().min(1).default(8),
  /** Seconds per request before it is retried. */
  timeout: z.number().positive().default(600),
  retries: z.int().min(0).default(6),
  /** Fields added to every request body (engine extensions). */
  extra: z.record(z.string(), z.unknown()).optional(),
  /**
   * Steps that generate with a trained adapter: `local` generates them here (the model file is local for
   * training anyway); `{ hook }` runs a shell command that puts the adapter on the server first.
   */
  adapters: z.union([
    z.literal('local'),
    z.strictObject({
      /** Shell command run (cwd: the config's folder) before each remote step whose adapter differs from the last one. */
      hook: z.string().min(1),
      /** Model name to request while an adapter is loaded; `{name}` stands for the adapter's name. Defaults to `model`. */
      model: z.string().min(1).optional(),
      /** Also export the adapter as PEFT (adapter_model.safetensors + adapter_config.json) for the hook. */
      peft: z.boolean().default(false),
    }),
  ]).default('local'),
});
export type EndpointConfig = z.output<typeof endpoint>;

/** `prompt.template` value that selects each model's own chat template. */
export const CHAT = 'chat';

/** The paper's stop strings: the next `Question:` / `Answer:` block of the plain template. */
export const PLAIN_STOP = ['Question', 'Answer'] as const;

const modelRef = z.strictObject({ model: z.string().min(1), endpoint: endpoint.optional() });

export const configSchema = z.strictObject({
  /** Run folder (relative paths are relative to the config file). */
  out: z.string().min(1),
  weak: modelRef,
  strong: modelRef,
  data: z.strictObject({
    format: z.enum(['gsm8k', 'math', 'jsonl']).default('gsm8k'),
    train1: z.string().min(1),
    train2: z.string().min(1),
    test: z.string().min(1),
    /** Use only the first N questions of each split (0 = all). */
    limit: z.strictObject({ train1: z.int().min(0).default(0), train2: z.int().min(0).default(0), test: z.int().min(0).default(0) }).prefault({}),
  }),
  /**
   * Steps that may run at once (default 1). Independent steps (the baselines, the evaluations) then overlap:
   * on a CPU with spare cores set generation.threads so that jobs × threads fits them. Each running step
   * holds its own copy of its model, so memory grows with jobs.
   */
  jobs: z.int().min(1).max(16).default(1),
  /**
   * GPU backend of every model and trainer the run opens: 'auto' (CUDA, then Vulkan, then the CPU), 'cuda',
   * 'vulkan' or false (the CPU). Default: the process's (--gpu / W2S_GPU, else auto). Not part of any step's
   * inputs: a run resumed on another device keeps its finished steps.
   */
  gpu: z.union([z.enum(['auto', 'cuda', 'vulkan']), z.literal(false)]).optional(),
  /** Answer key; defaults by format: '####' (gsm8k, jsonl) or 'The answer is:' (math). */
  key: z.string().min(1).optional(),
  prompt: z.strictObject({
    /**
     * A plain template with `{question}` (the paper's, default), or `chat`: every prompt through each
     * model's own chat template (its GGUF's tokenizer.chat_template), control tokens parsed.
     */
    template: z.string().refine((t) => t === CHAT || t.includes('{question}'), { message: 'Expected "chat" or a template containing "{question}"' })
      .default('Question: {question}\nAnswer:'),
    /** System message of chat prompts (template: chat only). Optional, so that other configs keep their step hashes. */
    system: z.string().optional(),
    /** Weak-ICL demonstrations from D_weak. */
    shots: z.int().min(0).default(4),
    demos: z.union([
      z.strictObject({ strategy: z.literal('random'), seed: z.int().min(0).default(0) }),
      z.strictObject({ strategy: z.literal('ids'), ids: z.array(z.union([z.string(), z.int()])).min(1) }),
    ]).default({ strategy: 'random', seed: 0 }),
  }).prefault({}),
  generation: z.strictObject({
    maxTokens: z.int().min(1).default(1024),
    /** Defaults to ['Question', 'Answer'] with a plain template; to none with `chat` (the end of turn ends a sample). */
    stop: z.array(z.string().min(1)).optional(),
    parallel: z.int().min(1).max(128).optional(),
    threads: z.int().min(1).optional(),
    /** The sampler's attention kernel (SampleOptions.attention); optional, so that other configs keep their step hashes. */
    attention: z.enum(['auto', 'flash', 'plain']).optional(),
    symbolic: z.boolean().default(false),
  }).prefault({}),
  train: z.strictObject({
    weak: train.prefault({}),
    strong: train.prefault({}),
    preference: train.extend({ lr: z.number().positive().default(2e-5) }).prefault({}),
  }).prefault({}),
  stage1: z.strictObject({
    /** 1, or 2 for the paper's second round (GSM8K, OlympicArena). */
    iterations: z.int().min(1).max(2).default(1),
    /** Training set of the final Stage I model. */
    set: z.enum(['hybrid', 'weak', 'icl']).default('hybrid'),
    /** Keep questions whose weak and ICL answers are both empty (the release did; the rule drops them). */
    keepEmpty: z.boolean().default(false),
  }).prefault({}),
  stage2: z.strictObject({
    enabled: z.boolean().default(true),
    algorithm: z.enum(['dpo', 'orpo']).default('orpo'),
    samples: z.int().min(1).default(10),
    temperature: z.number().min(0).default(1),
    topP: z.number().gt(0).max(1).default(1),
    seed: z.int().min(0).default(0),
    minConfidence: z.number().min(0).max(1).default(0.6),
    rejectConfidence: z.number().min(0).max(1).default(0.8),
    pairsPerQuestion: z.int().min(1).default(1),
    pairSeed: z.int().min(0).default(42),
    beta: z.number().positive().default(0.1),
    lambda: z.number().positive().default(0.1),
  }).prefault({}),
  baselines: z.strictObject({
    /** Strong model trained on all of D_weak (the naive baseline). */
    fullWeakFt: z.boolean().default(true),
    /** Strong model trained on train_2 gold (the PGR ceiling). */
    ceiling: z.boolean().default(true),
  }).prefault({}),
  eval: z.strictObject({
    /** Also sample k answers per test question for pass@k / maj@k (0 = greedy only). */
    k: z.int().min(0).default(0),
  }).prefault({}),
});

type ParsedConfig = z.output<typeof configSchema>;
export type RunConfig = Omit<ParsedConfig, 'generation'> & {
  /** `stop` resolved from the template (PLAIN_STOP, or none with chat). */
  generation: ParsedConfig['generation'] & { stop: string[] };
  key: string;
  /** Folder of the config file (cwd of adapter hooks). */
  base?: string;
};
export type TrainConfig = typeof trainDefaults;

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)] as number[]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/** Known keys of the object schema at `where` (a path of keys), for suggestions. */
function knownKeys(where: readonly PropertyKey[]): string[] {
  let s: z.ZodType = configSchema;
  for (const k of where) {
    const inner = (s as { unwrap?: () => z.ZodType }).unwrap?.() ?? s;
    const shape = (inner as unknown as { shape?: Record<string, z.ZodType> }).shape;
    if (!shape || !(String(k) in shape)) return [];
    s = shape[String(k)]!;
  }
  let inner: z.ZodType = s;
  for (let i = 0; i < 3; i++) inner = (inner as { unwrap?: () => z.ZodType }).unwrap?.() ?? inner;
  return Object.keys((inner as unknown as { shape?: Record<string, unknown> }).shape ?? {});
}

function describeIssues(error: z.ZodError, file: string): string {
  return error.issues.map((issue) => {
    const at = issue.path.length ? issue.path.join('.') : '(top level)';
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => {
        const known = knownKeys(issue.path);
        const best = known.map((k) => [k, editDistance(k.toLowerCase(), key.toLowerCase())] as const).sort((a, b) => a[1] - b[1])[0];
        const hint = best && best[1] <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean "${best[0]}"?)` : known.length ? ` (known keys: ${known.join(', ')})` : '';
        return `${file}: unknown key "${[...issue.path, key].join('.')}"${hint}`;
      }).join('\n');
    }
    return `${file}: ${at}: ${issue.message}`;
  }).join('\n');
}

/** Parses and validates a config; paths inside are resolved against the config file's folder. */
export function parseConfig(text: string, file: string): RunConfig {
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`${file}: not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new InvalidArgumentError(describeIssues(parsed.error, file));
  const c = parsed.data;
  const chat = c.prompt.template === CHAT;
  if (c.prompt.system !== undefined && !chat) throw new InvalidArgumentError(`${file}: prompt.system applies to chat prompts only: set prompt.template: chat, or remove prompt.system`);
  // With chat, the end-of-turn token (EOG) ends a sample; `Question`/`Answer` would cut answers that use the words.
  // Keys keep the schema's order: the generation options are hashed into step inputs as they are.
  const { maxTokens, stop, ...generation } = c.generation;
  const base = path.dirname(path.resolve(file));
  const abs = (p: string) => path.resolve(base, p);
  return {
    ...c,
    generation: { maxTokens, stop: stop ?? (chat ? [] : [...PLAIN_STOP]), ...generation },
    out: abs(c.out),
    weak: { ...c.weak, model: abs(c.weak.model) },
    strong: { ...c.strong, model: abs(c.strong.model) },
    data: { ...c.data, train1: abs(c.data.train1), train2: abs(c.data.train2), test: abs(c.data.test) },
    key: c.key ?? (c.data.format === 'math' ? 'The answer is:' : '####'),
    ...(c.weak.endpoint || c.strong.endpoint ? { base } : {}),
  };
}

export function readConfig(file: string): RunConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new InvalidArgumentError(`The config file ${file} cannot be read`);
  }
  return parseConfig(text, file);
}
