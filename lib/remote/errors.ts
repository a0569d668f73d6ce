// Typed errors of remote generation (lib/remote/openai.ts): each carries a stable `code`, as lib/errors.ts's do.
// A 4xx answer is the caller's to fix and is never retried; these name the prompt it concerned.
import { W2sError } from '../errors.js';

/** The server does not serve the model named in the request (404, or absent from GET /v1/models). */
export class RemoteModelNotFoundError extends W2sError {
  constructor(message: string, readonly model: string, options?: { cause?: unknown }) {
    super('ERR_W2S_REMOTE_MODEL', message, options);
  }
}

/** The server refused the API key (401/403). The key itself is never part of the message. */
export class RemoteAuthError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_REMOTE_AUTH', message, options);
  }
}

/** Any other 4xx answer: the request is wrong for this server (a parameter it refuses, a bad value). */
export class RemoteRequestError extends W2sError {
  constructor(message: string, readonly status: number, readonly promptIndex?: number, options?: { cause?: unknown }) {
    super('ERR_W2S_REMOTE_REQUEST', message, options);
  }
}

/** The server stayed unreachable, overloaded (429) or failing (5xx, timeouts) through every retry. */
export class RemoteUnavailableError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_REMOTE_UNAVAILABLE', message, options);
  }
}

/** A partial-results file belongs to another request (other prompts or options) or is damaged. */
export class PartialResultsError extends W2sError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_W2S_PARTIAL_RESULTS', message, options);
  }
}
