// The peer of `w2s bench sample`: node-llama-cpp doing the same sampling work (prompts × n samples, max
// new tokens, temperature 1), all samples as parallel context sequences so it batches them into shared
// decode calls. Runs in its own process (spawned by sample-bench.ts) so the two never share a llama state.
// Usage: node peer-node-llama-cpp.js '<json: {model, prompts, n, maxTokens, threads}>'  -> JSON on stdout
import { getLlama, LlamaLogLevel } from 'node-llama-cpp';

interface PeerJob {
  model: string;
  prompts: string[];
  n: number;
  maxTokens: number;
  threads: number;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]!) as PeerJob;
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: job.threads });
  const model = await llama.loadModel({ modelPath: job.model });
  const total = job.prompts.length * job.n;
  const promptTokens = job.prompts.map((p) => [model.tokens.bos!, ...model.tokenize(p)]);
  const longest = Math.max(...promptTokens.map((t) => t.length));
  // As many sequences as the work has (node-llama-cpp evaluates concurrent sequences in one batch);
  // fall back to fewer if the context cannot be created with that many.
  let sequences = total;
  let context;
  for (;;) {
    try {
      context = await model.createContext({
        sequences, contextSize: sequences * (longest + job.maxTokens + 8), threads: job.threads, batchSize: 512,
      });
      break;
    } catch (err) {
      if (sequences <= 1) throw err;
      sequences = Math.max(1, Math.floor(sequences / 2));
    }
  }
  const queue = Array.from({ length: total }, (_, i) => i);
  let generated = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: sequences }, async () => {
    const seq = context.getSequence();
    for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
      await seq.clearHistory();
      let count = 0;
      for await (const token of seq.evaluate(promptTokens[Math.floor(i / job.n)]!, { temperature: 1, seed: i })) {
        if (model.isSpecialToken(token) && token === model.tokens.eos) break;
        count += 1;
        if (count >= job.maxTokens) break;
      }
      generated += count;
    }
    seq.dispose();
  }));
  const seconds = (performance.now() - start) / 1000;
  process.stdout.write(JSON.stringify({ sequences, generated, seconds, tokensPerSecond: generated / seconds }) + '\n');
  await context.dispose();
  await model.dispose();
  await llama.dispose();
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
