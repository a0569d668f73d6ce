// Error classes shared by the library: every error we throw on purpose carries a stable `code`
// so callers (and the CLI) can branch on it without parsing messages.

export class W2sError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A caller passed an option or argument that is the wrong type, out of range, or inconsistent with another. */
export class InvalidArgumentError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_INVALID_ARGUMENT', message, options);
  }

  /**
   * Builds the one message shape we use everywhere:
   * `Expected positive integer for layers but received 1.5 of type number`.
   */
  static expected(expectation: string, name: string, value: unknown): InvalidArgumentError {
    return new InvalidArgumentError(`Expected ${expectation} for ${name} but received ${describeValue(value)} of type ${typeOfValue(value)}`);
  }
}

function typeOfValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function describeValue(value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = JSON.stringify(value);
  else if (typeof value === 'bigint') text = `${value}n`;
  else if (typeof value === 'function') text = `[function ${value.name || 'anonymous'}]`;
  else if (typeof value === 'object' && value !== null) {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = Object.prototype.toString.call(value);
    }
  } else text = String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** A file the caller named does not exist (or is not a regular file). */
export class FileNotFoundError extends W2sError {
  constructor(readonly path: string, what = 'file') {
    super('ERR_W2S_FILE_NOT_FOUND', `The ${what} ${path} does not exist or is not a regular file`);
  }
}

/** The model's architecture (or shape) is one weak2strong cannot run. */
export class UnsupportedModelError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_UNSUPPORTED_MODEL', message, options);
  }
}

/** A prompt (or prompt + completion) does not fit in the context. */
export class ContextOverflowError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_CONTEXT_OVERFLOW', message, options);
  }
}

/** A LoRA adapter could not be loaded or does not belong to this model. */
export class AdapterError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_ADAPTER', message, options);
  }
}

/** An object was used after dispose(). */
export class DisposedError extends W2sError {
  constructor(what: string) {
    super('ERR_W2S_DISPOSED', `The ${what} was disposed and cannot be used any more`);
  }
}

/** The operation was cancelled through its AbortSignal (same name and code as Node's own AbortError). */
export class AbortError extends W2sError {
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super('ABORT_ERR', message, options);
    this.name = 'AbortError';
  }
}

/** A llama.cpp call failed; the message names the call and what llama.cpp logged. */
export class NativeError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_LLAMA', message, options);
  }
}

/** The native addon could not be loaded; the message lists every path tried and what to do. */
export class AddonLoadError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_ADDON_LOAD', message, options);
  }
}

/**
 * A GPU backend was asked for (`gpu: 'cuda' | 'vulkan'`) that this process cannot use: its addon variant is
 * not installed, its driver library is missing, it registered no device, or the process already runs
 * another variant. The message lists what was tried.
 */
export class BackendUnavailableError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_BACKEND_UNAVAILABLE', message, options);
  }
}

/** Training produced a non-finite loss or gradient; the step was not applied and the last checkpoint stands. */
export class TrainingDivergedError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_TRAIN_NONFINITE', message, options);
  }
}

/** A checkpoint is missing, incomplete (e.g. cut short by a crash) or belongs to another run. */
export class CheckpointError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_CHECKPOINT', message, options);
  }
}

/** An output path cannot be used (it names an input, a folder, a read-only place) or writing it failed (disk full). */
export class OutputError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_OUTPUT', message, options);
  }
}

/** A training run would need more memory than the device has (see lib/train/memory-plan.ts); the message names the options that shrink it. */
export class OutOfMemoryError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_OUT_OF_MEMORY', message, options);
  }
}
