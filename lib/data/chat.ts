// Prompts for instruct models through their own chat template (Model.applyChatTemplate), and SFT / preference
// rows whose loss falls on the assistant turn only: the prompt is the conversation up to the start of the
// assistant turn, the response is the assistant's text plus the template's end-of-turn marker.
import { InvalidArgumentError } from '../errors.js';
import type { ChatMessage, Model } from '../model.js';

export interface ChatOptions {
  /** A system message put first. */
  system?: string;
  /** A built-in template name instead of the model's own (see Model.applyChatTemplate). */
  template?: string;
}

/** A few-shot demonstration: an earlier exchange shown to the model before the question. */
export interface ChatDemo {
  question: string;
  answer: string;
}

/** The prompt for `question` as a user turn, ending where the assistant's answer starts. */
export function chatPrompt(model: Model, question: string, o: ChatOptions = {}): string {
  return model.applyChatTemplate(turns(question, o), { addAssistant: true, template: o.template });
}

/**
 * The few-shot prompt: each demonstration as an earlier user turn (its question) answered by an assistant
 * turn (its answer), after the system message, then `question` as the last user turn. Demonstrations are real
 * turns rather than text pasted into one user message, so the model sees answers in exactly the place and
 * format its own answer takes, as the plain template's `Question: … Answer: …` blocks do for base models.
 */
export function chatFewShotPrompt(model: Model, question: string, demos: readonly ChatDemo[], o: ChatOptions = {}): string {
  const shots: ChatMessage[] = demos.flatMap((d) => [{ role: 'user', content: d.question }, { role: 'assistant', content: d.answer }]);
  const system: ChatMessage[] = o.system ? [{ role: 'system', content: o.system }] : [];
  return model.applyChatTemplate([...system, ...shots, { role: 'user', content: question }], { addAssistant: true, template: o.template });
}

/**
 * {prompt, response} for training on one exchange: `response` is what the template puts after the prompt for
 * this assistant turn (its text and end-of-turn marker), so the loss covers exactly the assistant's tokens.
 */
export function chatSftRow(model: Model, question: string, answer: string, o: ChatOptions = {}): { prompt: string; response: string } {
  const prompt = chatPrompt(model, question, o);
  const full = model.applyChatTemplate([...turns(question, o), { role: 'assistant', content: answer }], { addAssistant: false, template: o.template });
  if (!full.startsWith(prompt)) {
    // Some templates render earlier turns differently once an assistant turn follows; then there is no clean split.
    throw new InvalidArgumentError('The chat template renders the conversation differently with the answer appended, so the assistant turn cannot be separated; use another template');
  }
  return { prompt, response: full.slice(prompt.length) };
}

/**
 * chatSftRow split once more: `suffix` is what the template adds after the answer's text (the end-of-turn
 * marker), or undefined when the template changes the answer's text itself (e.g. trims it), so that the
 * response is not answer + suffix.
 */
export function chatSftParts(model: Model, question: string, answer: string, o: ChatOptions = {}): { prompt: string; response: string; suffix: string | undefined } {
  const row = chatSftRow(model, question, answer, o);
  return { ...row, suffix: row.response.startsWith(answer) ? row.response.slice(answer.length) : undefined };
}

function turns(question: string, o: ChatOptions): ChatMessage[] {
  return [...(o.system ? [{ role: 'system', content: o.system }] : []), { role: 'user', content: question }];
}
