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

/** The prompt for `question` as a user turn, ending where the assistant's answer starts. */
export function chatPrompt(model: Model, question: string, o: ChatOptions = {}): string {
  return model.applyChatTemplate(turns(question, o), { addAssistant: true, template: o.template });
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

function turns(question: string, o: ChatOptions): ChatMessage[] {
  return [...(o.system ? [{ role: 'system', content: o.system }] : []), { role: 'user', content: question }];
}
