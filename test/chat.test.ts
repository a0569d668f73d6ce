// Instruct models: prompts through the model's own chat template (here Phi-3's real tokenizer and template,
// copied into a random-weight model), SFT rows whose loss covers the assistant turn and its end-of-turn
// control token only, and typed errors for templates llama.cpp does not know.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { chatPrompt, chatSftRow } from '../lib/data/chat.js';
import { InvalidArgumentError, UnsupportedModelError } from '../lib/errors.js';
import { createModel } from '../lib/model/create.js';
import { loadModel } from '../lib/model.js';
import { tokenizeSft } from '../lib/train/sft-data.js';
import { trainSft } from '../lib/train/sft.js';
import { TMP, tinyModel } from './helpers/models.js';

const dir = fs.mkdtempSync(path.join(TMP, 'chat-'));
const PHI3 = path.resolve('../shared/models/vocab/ggml-vocab-phi-3.gguf');

test('Phi-3 chat template: prompt, assistant-only SFT rows, and the end-of-turn control token', async (t) => {
  const file = path.join(dir, 'phi3-random.gguf');
  await createModel({ arch: 'llama', layers: 1, embd: 64, heads: 4, kvHeads: 2, ff: 128, ctx: 256, type: 'f32', seed: 1, out: file, vocabFrom: PHI3 });
  const m = await loadModel(file);
  try {
    const prompt = chatPrompt(m, 'What is 2 + 2?');
    t.is(prompt, '<|user|>\nWhat is 2 + 2?<|end|>\n<|assistant|>\n');
    const row = chatSftRow(m, 'What is 2 + 2?', '4', { system: 'Be brief.' });
    t.is(row.prompt, '<|system|>\nBe brief.<|end|>\n<|user|>\nWhat is 2 + 2?<|end|>\n<|assistant|>\n');
    t.is(row.response, '4<|end|>\n');
    const [end] = m.tokenize('<|end|>', { parseSpecial: true });
    const withSpecial = tokenizeSft(m, [row], 128, true).examples[0]!;
    const asText = tokenizeSft(m, [row], 128, false).examples[0]!;
    const response = withSpecial.tokens.slice(withSpecial.nPrompt);
    t.log(`response tokens with parseSpecial: ${response.join(' ')}; as text: ${asText.tokens.slice(asText.nPrompt).join(' ')}`);
    t.true(response.includes(end!), 'the end-of-turn control token is trained');
    t.false(asText.tokens.includes(end!), 'without parseSpecial it stays text');
    // The prompt's control tokens are context, never targets.
    const [user] = m.tokenize('<|user|>', { parseSpecial: true });
    t.true(withSpecial.tokens.slice(0, withSpecial.nPrompt).includes(user!));
    t.false(response.includes(user!));
    const rows = ['1 + 1', '2 + 3', '4 + 4', '5 + 1'].map((q, i) => chatSftRow(m, `What is ${q}?`, String([2, 5, 8, 6][i])));
    const r = await trainSft({ model: file, data: rows, out: path.join(dir, 'chat.lora.gguf'), parseSpecial: true, epochs: 2, batch: 2, threads: 1 });
    t.is(r.data.examples, 4);
  } finally {
    m.dispose();
  }
});

test('templates: a built-in one by name; none on the model or an unknown one is a typed error', async (t) => {
  const m = await loadModel(await tinyModel());
  try {
    t.is(m.applyChatTemplate([{ role: 'user', content: 'Hi' }], { template: 'chatml' }), '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    t.throws(() => m.applyChatTemplate([{ role: 'user', content: 'Hi' }]), { instanceOf: InvalidArgumentError, message: /has no chat template/ });
    t.throws(() => m.applyChatTemplate([{ role: 'user', content: 'Hi' }], { template: '{{ nonsense }}' }), { instanceOf: UnsupportedModelError, message: /does not know this chat template/ });
    t.throws(() => m.applyChatTemplate([]), { instanceOf: InvalidArgumentError });
  } finally {
    m.dispose();
  }
});
