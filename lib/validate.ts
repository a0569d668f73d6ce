// Option validation with one message shape ("Expected positive integer for n but received 0 of type
// number"), shared by the library API and the CLI.
import { InvalidArgumentError } from './errors.js';

export function integer(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const what = min === 1 && max === Number.MAX_SAFE_INTEGER ? 'positive integer'
      : min === 0 && max === Number.MAX_SAFE_INTEGER ? 'non-negative integer'
      : `integer in [${min}, ${max}]`;
    throw InvalidArgumentError.expected(what, name, value);
  }
  return value;
}

export function positiveInt(name: string, value: unknown): number {
  return integer(name, value, 1);
}

export function nonNegativeInt(name: string, value: unknown): number {
  return integer(name, value, 0);
}

/** A finite number in [min, max] (or (min, max] with `openMin`). */
export function numberIn(name: string, value: unknown, min: number, max: number, openMin = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value > max || (openMin ? value <= min : value < min)) {
    throw InvalidArgumentError.expected(`number in ${openMin ? '(' : '['}${min}, ${max}]`, name, value);
  }
  return value;
}

/** An optional boolean option (undefined = `fallback`). */
export function optionalBoolean(name: string, value: unknown, fallback = false): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw InvalidArgumentError.expected('boolean', name, value);
  return value;
}

export function nonEmptyString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw InvalidArgumentError.expected('non-empty string', name, value);
  return value;
}

export function stringArray(name: string, value: unknown, allowEmptyItems = false): string[] {
  if (!Array.isArray(value)) throw InvalidArgumentError.expected('array of strings', name, value);
  value.forEach((v, i) => {
    if (typeof v !== 'string' || (!allowEmptyItems && v.length === 0)) {
      throw InvalidArgumentError.expected(allowEmptyItems ? 'string' : 'non-empty string', `${name}[${i}]`, v);
    }
  });
  return value as string[];
}

export function abortSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw InvalidArgumentError.expected('AbortSignal', name, value);
  return value;
}

/** Longest context a job may ask for (positions per sequence); larger values are caller mistakes. */
export const MAX_CONTEXT = 1 << 24;

/**
 * The context size of a job: the caller's `contextSize`, else the model's training context capped at
 * MAX_CONTEXT. A model whose own context length is unusable is blamed, not an option the caller never passed.
 */
export function contextSizeOption(value: unknown, nCtxTrain: number, modelPath: string): number {
  if (value !== undefined) return integer('contextSize', value, 2, MAX_CONTEXT);
  if (!Number.isInteger(nCtxTrain) || nCtxTrain < 2) {
    throw new InvalidArgumentError(`The model ${modelPath} declares a context length of ${nCtxTrain} tokens, too small to run; ` +
      'pass contextSize (--context) explicitly, or fix the context_length key of the GGUF');
  }
  return Math.min(nCtxTrain, MAX_CONTEXT);
}
