/**
 * How the browser's protocol clients recover (no DOM code): reconnection delays with exponential
 * backoff and jitter, and waits that end. disco_client/remote.py holds the Python twin.
 *
 *   const delay = backoffDelay(attempt, RECOVERY_DEFAULTS);          // ms before attempt `attempt` (1, 2, ...)
 *   const closed = await within(session.next('round_closed'), 30000, 'round_closed');
 */

/** Reconnection settings; a session's `recovery` option overrides any of them. */
export const RECOVERY_DEFAULTS = Object.freeze({
  attempts: 8, // reconnection attempts before giving up
  initialDelayMs: 500, // the delay before the first attempt
  maxDelayMs: 15000, // no delay is longer
  factor: 2, // each delay is this many times the one before
  jitter: 0.5, // each delay is shortened by a random fraction up to this (0: none)
  deadlineSeconds: 120, // the round deadline when the server has not said (waits derive from it)
  probes: 3, // status probes while a round stays open before the client syncs and trains on
});

/**
 * The delay before reconnection attempt `attempt` (1-based): initialDelayMs * factor^(attempt-1),
 * at most maxDelayMs, less a random part up to `jitter` of it, so that participants cut off together
 * do not all come back in the same instant.
 */
export function backoffDelay(attempt, settings = RECOVERY_DEFAULTS, random = Math.random) {
  const { initialDelayMs, maxDelayMs, factor, jitter } = { ...RECOVERY_DEFAULTS, ...settings };
  const full = Math.min(maxDelayMs, initialDelayMs * factor ** Math.max(0, attempt - 1));
  return Math.round(full * (1 - jitter * random()));
}

/** An error a recovery step raises: `code` is `timeout` (a wait ended) or `reconnect_failed`. */
export class RecoveryError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'RecoveryError';
    this.code = code;
  }
}

/** `promise`, or a RecoveryError('timeout') after `ms` milliseconds, whichever comes first. */
export function within(promise, ms, what = 'a reply') {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new RecoveryError('timeout', `No ${what} within ${Math.round(ms / 1000)} s.`)), ms);
  });
  promise.catch(() => {}); // a late rejection of the abandoned wait is nobody's error
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls `attempt()` until it resolves, waiting backoffDelay(k) before attempt k, at most
 * `settings.attempts` times; `onAttempt({attempt, delayMs})` is told before each wait. Throws
 * RecoveryError('reconnect_failed') naming the last error when every attempt failed, and at once
 * when `isFatal(error)` (the server refused us: retrying would not help).
 */
export async function retryWithBackoff(attempt, { settings = RECOVERY_DEFAULTS, onAttempt = () => {},
  isFatal = () => false, wait = sleep, random = Math.random } = {}) {
  const attempts = { ...RECOVERY_DEFAULTS, ...settings }.attempts;
  let last = null;
  for (let k = 1; k <= attempts; k += 1) {
    const delayMs = backoffDelay(k, settings, random);
    onAttempt({ attempt: k, attempts, delayMs });
    await wait(delayMs);
    try {
      return await attempt(k);
    } catch (error) {
      if (isFatal(error)) throw error;
      last = error;
    }
  }
  throw new RecoveryError('reconnect_failed',
    `Could not reconnect after ${attempts} attempts${last ? `: ${last.message}` : ''}.`);
}

/**
 * How long to wait for each thing, in ms, from the task's round deadline (`deadlineSeconds`, from
 * the welcome or the task) and the open round's `deadline` (an ISO time, federated welcome and
 * status): a socket to open and welcome us, a quarter of a deadline (at least 5 s); an update to
 * be accepted, one deadline; a round to close, what remains of its deadline plus one deadline for
 * the aggregation; a status reply, a quarter of a deadline. `overrides` wins.
 */
export function waitLimits(deadlineSeconds, roundDeadline = null, overrides = {}, now = Date.now()) {
  const deadlineMs = 1000 * (Number.isFinite(deadlineSeconds) && deadlineSeconds > 0
    ? deadlineSeconds : RECOVERY_DEFAULTS.deadlineSeconds);
  const at = Date.parse(roundDeadline ?? '');
  const remaining = Number.isFinite(at) ? Math.max(0, at - now) : deadlineMs;
  return {
    openMs: Math.max(5000, deadlineMs / 4), acceptedMs: deadlineMs, roundMs: remaining + deadlineMs,
    statusMs: Math.max(5000, deadlineMs / 4), ...overrides,
  };
}

/**
 * Where a page keeps its resume token between reloads: the tab's sessionStorage (a reload resumes as
 * the same participant, a second tab is another one; closing the tab forgets it). Any object with
 * getItem / setItem works (tests pass a Map-backed one); without storage nothing is kept.
 */
export class TokenMemory {
  /**
   * @param {string} scheme 'federated' or 'decentralized'
   * @param {string} taskId
   * @param {{getItem: (key: string) => string|null, setItem: (key: string, value: string) => void}|null} [storage]
   */
  constructor(scheme, taskId, storage = defaultStorage()) {
    this.key = `disco:resume:${scheme}:${taskId}`;
    this.storage = storage;
  }

  /** The token kept by an earlier page of this tab, or ''. */
  recall() {
    try {
      return this.storage?.getItem(this.key) || '';
    } catch {
      return ''; // storage refused (privacy settings): a new participant
    }
  }

  /** Keeps `token` for the next page of this tab. */
  keep(token) {
    try {
      if (token) this.storage?.setItem(this.key, token);
    } catch { /* storage refused or full: the token lives in memory only */ }
  }
}

function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // sandboxed documents throw on access
  }
}
