// Independent reference: per-token log-probs computed from node-llama-cpp's own evaluation path (its
// addon, its batching) from raw logits, log-softmax in double precision in JS.
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';

let llama: Promise<Llama> | undefined;

export function nodeLlama(): Promise<Llama> {
  llama ??= getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: 2 });
  return llama;
}

/** log p(tokens[i+1] | tokens[..i]) for i >= nPrompt - 1, from node-llama-cpp, optionally with a LoRA file. */
export async function referenceLogprobs(modelPath: string, tokens: number[], nPrompt: number, loraPath?: string): Promise<number[]> {
  const l = await nodeLlama();
  const model = await l.loadModel({ modelPath });
  const ctx = await model.createContext({ contextSize: 512, threads: 2, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', ...(loraPath ? { lora: { adapters: [{ filePath: loraPath }] } } : {}) });
  const seq = ctx.getSequence();
  const input = tokens.slice(0, -1).map((t, i) =>
    i >= nPrompt - 1 ? ([t, { generateNext: { logits: true } }] as const) : t) as Parameters<typeof seq.controlledEvaluate>[0];
  const out = await seq.controlledEvaluate(input);
  const result: number[] = [];
  for (let i = nPrompt - 1; i < tokens.length - 1; i++) {
    const logits = out[i]!.next.logits!;
    let max = -Infinity;
    for (const v of logits.values()) max = Math.max(max, v);
    let sum = 0;
    for (const v of logits.values()) sum += Math.exp(v - max);
    result.push(logits.get(tokens[i + 1]! as never)! - max - Math.log(sum));
  }
  await ctx.dispose();
  await model.dispose();
  return result;
}
