/**
 * The browser's side of a federated task (no DOM code): the WebSocket protocol of
 * aggregation/consumers.py, with weight updates encoded by codec.js.
 *
 *   const session = new FederatedSession('titanic', {onEvent});
 *   const welcome = await session.connect();          // round, currentVersion, participants, waitingFor
 *   await session.syncModel(model);                     // start from the current global version
 *   // ... train roundDuration epochs ...
 *   const outcome = await session.contribute(model, n); // send, wait for the round to end
 *   await session.applyVersion(model, outcome.version); // continue from the version the server says
 *
 * A task with `participantsPerRound` invites only some participants to each round (the server's
 * `invited` in welcome, status, participants, round_closed and round_failed): `contribute` then sends
 * nothing for a round this session is not invited to, waits for that round's end (or an invitation
 * in the meantime) and resolves with `contributed: false`; the page loads the version and trains on.
 *
 * The session recovers by itself (recovery.js): a socket that closes is reopened with backoff and
 * the resume token, every wait has a time limit after which it asks the server's `status`, and
 * `contribute` resolves with the version to continue from, whatever happened to the round:
 * `{type: 'round_closed'|'round_failed'|'sync', round, version, nextRound, reason?}`.
 *
 *   // ... after applying the round's version, score it on the validation split (federated evaluation):
 *   await session.reportEvaluation({loss, accuracy, samples});  // null when the round made no model to score
 *
 * It tells
 * `onEvent` `{type: 'reconnecting', attempt, attempts, delayMs}`, `{type: 'reconnected', attempt, round,
 * currentVersion}` and `{type: 'sync', reason, round, version}`, for the page to show.
 */

import { ENCODINGS, encodeWeights } from './codec.js';
import {
  RECOVERY_DEFAULTS, RecoveryError, TokenMemory, retryWithBackoff, sleep, waitLimits, within,
} from './recovery.js';

/** Updates larger than this go as an `update_begin` announcement plus parts of this size (aggregation/incoming.py). */
export const PART_BYTES = 1 << 20;

/**
 * Sends the weight message `frame` (a Uint8Array from encodeWeights): whole when it is small, else
 * announced and in parts, so the server can spool it to disk instead of holding it in memory.
 * `announceFrom` and `granted`: the server's welcome offered upload slots (its `announceFrom`,
 * aggregation/upload_slots.py): a frame of at least `announceFrom` bytes is announced and its bytes sent
 * once `granted()` resolves (the server's `update_go`). Without them (an older server) nothing waits, and
 * everything is sent before the returned promise's first wait.
 */
export async function sendUpdate(ws, frame, partBytes = PART_BYTES, { announceFrom = null, granted = null } = {}) {
  const wait = granted !== null && Number.isInteger(announceFrom) && frame.byteLength >= announceFrom;
  if (!wait && frame.byteLength <= partBytes) {
    ws.send(frame);
    return;
  }
  ws.send(JSON.stringify({ type: 'update_begin', bytes: frame.byteLength }));
  if (wait) await granted();
  for (let start = 0; start < frame.byteLength; start += partBytes) {
    ws.send(frame.subarray(start, Math.min(start + partBytes, frame.byteLength)));
  }
}

/** An error the server sent, with its machine-readable code. */
export class FederatedError extends Error {
  constructor(code, reason) {
    super(reason);
    this.name = 'FederatedError';
    this.code = code;
  }
}

/** The model's variables by the names the weight manifest uses (TF.js may suffix `name`, not `originalName`). */
export function variablesByName(model) {
  const byName = new Map();
  for (const variable of model.weights) byName.set(variable.originalName ?? variable.name, variable);
  return byName;
}

/** Server error codes after which reconnecting or waiting again helps; any other refusal is final. */
const RECOVERABLE = new Set(['closed', 'timeout']);

export class FederatedSession {
  /**
   * @param {string} taskId
   * @param {{origin?: string, onEvent?: (message: object) => void, resumeToken?: string, WebSocketImpl?: any,
   *   deadlineSeconds?: number, recovery?: object, waits?: object, wait?: (ms: number) => Promise<void>,
   *   random?: () => number, fetchImpl?: typeof fetch, tokens?: TokenMemory}} [options] `deadlineSeconds`: the task's round deadline (the page passes
   *   trainingInformation.roundDeadlineSeconds); `recovery`: overrides of RECOVERY_DEFAULTS; `waits`: fixed
   *   limits in ms ({openMs, acceptedMs, roundMs, statusMs}) instead of those derived from the deadline;
   *   `resumeToken`: join as this participant (default: the one `tokens` kept for this tab, else a new one).
   */
  constructor(taskId, { origin = globalThis.location?.origin, onEvent = () => {}, resumeToken, WebSocketImpl,
    deadlineSeconds, recovery = {}, waits = {}, wait = sleep, random = Math.random, fetchImpl,
    tokens = new TokenMemory('federated', taskId) } = {}) {
    this.taskId = taskId;
    this.fetchImpl = fetchImpl;
    this.origin = origin;
    this.onEvent = onEvent;
    this.tokens = tokens;
    // A reloaded page resumes as the participant it was (its update of the open round still counts).
    this.resumeToken = resumeToken ?? tokens.recall();
    this.WebSocketImpl = WebSocketImpl ?? globalThis.WebSocket;
    this.recovery = { ...RECOVERY_DEFAULTS, ...recovery };
    this.deadlineSeconds = deadlineSeconds ?? this.recovery.deadlineSeconds;
    this.waitOverrides = waits;
    this.wait = wait;
    this.random = random;
    this.round = null; // the round this page trains for
    this.version = null; // the version the page's model holds
    this.server = { round: null, version: null, deadline: null }; // what the server said last
    this.lastEnd = null; // the last round_closed / round_failed, in case it came between two waits
    this.invitation = null; // {round, invited}: what the server said last of this session's invitation
    this.participantsPerRound = null; // the task's participantsPerRound (null: everyone, every round)
    this.evaluable = null; // {round, version}: the round whose result the page continues from, not yet scored
    this.manifest = null;
    this.waiters = [];
    this.ws = null;
    this.closing = false;
    /** @type {'float32'|'float16'|'int8'} the encoding of this session's updates (set by the welcome) */
    this.encoding = 'float32';
    /** @type {number|null} updates of at least this many bytes wait for `update_go` (set by the welcome) */
    this.announceFrom = null;
  }

  /** The time limits of this moment's waits (recovery.js waitLimits). */
  limits() {
    return waitLimits(this.deadlineSeconds, this.server.deadline, this.waitOverrides);
  }

  /**
   * Opens the connection; resolves with the server's welcome. A server that cannot be reached or
   * does not welcome in time is tried again with backoff, as after a lost connection.
   */
  async connect() {
    let welcome;
    try {
      welcome = await this.open();
    } catch (error) {
      if (!(error instanceof FederatedError && RECOVERABLE.has(error.code)) && !(error instanceof RecoveryError)) {
        throw error;
      }
      welcome = await this.reconnect();
    }
    this.round = welcome.round;
    this.version = welcome.currentVersion;
    return welcome;
  }

  /** One attempt: a new socket, the join message, the welcome within `openMs`. */
  async open() {
    this.drop();
    const url = new URL(`/ws/federated/${this.taskId}/`, this.origin.replace(/^http/, 'ws'));
    const ws = new this.WebSocketImpl(url.toString());
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    // The first message joins; the resume token travels in it, never in the URL (access logs).
    const join = { type: 'join', client: 'browser', ...(this.resumeToken ? { resumeToken: this.resumeToken } : {}) };
    ws.onopen = () => ws.send(JSON.stringify(join));
    ws.onmessage = (event) => { if (this.ws === ws) this.dispatch(JSON.parse(event.data)); };
    ws.onclose = () => {
      if (this.ws !== ws) return; // a socket this session already gave up
      this.ws = null;
      this.dispatch({ type: 'closed' });
    };
    try {
      const welcome = await within(this.next('welcome'), this.limits().openMs, 'welcome from the server');
      this.resumeToken = welcome.resumeToken;
      this.tokens.keep(welcome.resumeToken);
      // The task's compression: how the server wants updates encoded (it accepts nothing less exact).
      if (ENCODINGS.includes(welcome.compression)) this.encoding = welcome.compression;
      // Large updates are announced and sent when the server says `update_go` (its upload slots).
      this.announceFrom = Number.isInteger(welcome.announceFrom) && welcome.announceFrom > 0 ? welcome.announceFrom : null;
      return welcome;
    } catch (error) {
      if (this.ws === ws) this.drop();
      throw error;
    }
  }

  /** Forgets the current socket (closing it) without telling the waits: the caller decides what follows. */
  drop() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try { ws.close(); } catch { /* already closed */ }
    }
  }

  /** Reopens the connection with backoff and jitter and the resume token; resolves with the welcome. */
  async reconnect() {
    let tried = 0;
    const welcome = await retryWithBackoff(() => this.open(), {
      settings: this.recovery, wait: this.wait, random: this.random,
      onAttempt: (attempt) => { tried = attempt.attempt; this.onEvent({ type: 'reconnecting', ...attempt }); },
      isFatal: (error) => error instanceof FederatedError && !RECOVERABLE.has(error.code),
    });
    this.onEvent({ type: 'reconnected', attempt: tried, round: welcome.round, currentVersion: welcome.currentVersion });
    return welcome;
  }

  dispatch(message) {
    this.observe(message);
    this.onEvent(message);
    const waiting = this.waiters;
    this.waiters = [];
    // A refused evaluation concerns only the wait for its reply, not the round's waits.
    const aboutEvaluation = message.type === 'error' && message.about === 'evaluation';
    for (const waiter of waiting) {
      if (aboutEvaluation && !waiter.types.includes('evaluation_recorded')) {
        this.waiters.push(waiter);
      } else if (message.type === 'error' || message.type === 'closed') {
        waiter.reject(new FederatedError(message.code ?? 'closed', message.reason ?? 'The server closed the connection.'));
      } else if (waiter.types.includes(message.type)) {
        waiter.resolve(message);
      } else {
        this.waiters.push(waiter);
      }
    }
  }

  /** Keeps what the server says of the open round, whichever message says it. */
  observe(message) {
    if (['welcome', 'status', 'participants'].includes(message.type)) {
      this.server = { round: message.round, version: message.currentVersion ?? this.server.version,
        deadline: message.deadline ?? this.server.deadline };
      if ('participantsPerRound' in message) this.participantsPerRound = message.participantsPerRound;
      if ('invited' in message) this.invitation = { round: message.round, invited: message.invited !== false };
    } else if (message.type === 'round_closed' || message.type === 'round_failed') {
      this.server = { round: message.nextRound, version: message.version, deadline: null };
      this.lastEnd = message;
      // `invited` of a round's end speaks of the next round.
      if ('invited' in message) this.invitation = { round: message.nextRound, invited: message.invited !== false };
    }
  }

  /** Whether this session may send an update to `round`: yes unless the server said it is not invited to it. */
  invitedTo(round) {
    return !(this.invitation && this.invitation.round === round && !this.invitation.invited);
  }

  /** The next message of one of `types` (an error message rejects). */
  next(...types) {
    // A socket that closed before this wait began (say, right after `accepted`) already told its
    // waiters; a new wait would hear nothing until its time limit: it fails at once instead.
    if (!this.ws) return Promise.reject(new FederatedError('closed', 'The connection to the server is closed.'));
    return new Promise((resolve, reject) => this.waiters.push({ types, resolve, reject }));
  }

  /**
   * fetch(url), tried again with the reconnection backoff while the server cannot be reached or
   * answers 502/503/504 (a restart); any other answer is returned as it is.
   */
  async get(url) {
    const attempt = async () => {
      const response = await (this.fetchImpl ?? globalThis.fetch)(url);
      if ([502, 503, 504].includes(response.status)) throw new FederatedError('closed', `HTTP ${response.status} for ${url}`);
      return response;
    };
    try {
      return await attempt();
    } catch (error) {
      if (error instanceof FederatedError || error instanceof TypeError) { // TypeError: the network failed
        return retryWithBackoff(attempt, { settings: this.recovery, wait: this.wait, random: this.random });
      }
      throw error;
    }
  }

  async fetchManifest(version) {
    const response = await this.get(`${this.origin}/tasks/${this.taskId}/versions/${version}/model.json`);
    if (!response.ok) throw new FederatedError('http', `Version ${version} could not be fetched (${response.status}).`);
    const modelJson = await response.json();
    return modelJson.weightsManifest;
  }

  /** Sets `model`'s weights to version `version`'s, matched by name. */
  async applyVersion(model, version) {
    const manifest = await this.fetchManifest(version);
    const byName = variablesByName(model);
    const base = `${this.origin}/tasks/${this.taskId}/versions/${version}/`;
    for (const group of manifest) {
      const buffers = await Promise.all(group.paths.map(async (p) => new Uint8Array(await (await this.get(base + p)).arrayBuffer())));
      const total = buffers.reduce((n, b) => n + b.length, 0);
      const joined = new Uint8Array(total);
      let offset = 0;
      for (const b of buffers) { joined.set(b, offset); offset += b.length; }
      offset = 0;
      for (const spec of group.weights) {
        const size = spec.shape.reduce((a, b) => a * b, 1);
        const values = new Float32Array(joined.buffer.slice(offset, offset + 4 * size));
        offset += 4 * size;
        const variable = byName.get(spec.name);
        if (!variable) throw new FederatedError('model_mismatch', `The page's model has no weight named ${spec.name}.`);
        tf.tidy(() => variable.write(tf.tensor(values, spec.shape)));
      }
    }
    this.manifest = manifest;
    this.version = version;
  }

  /** Brings `model` to the server's current version (a late joiner starts from the newest global model). */
  async syncModel(model) {
    await this.applyVersion(model, this.version);
  }

  /**
   * Sends the model's weights as this round's update and resolves when the round has ended, with the
   * version to continue from. It never waits without a limit and does not give up on what can be
   * recovered: a closed socket is reopened (and the update sent again if its round is still open); a
   * `stale_round` refusal, a round that ended while the page was away, or a round that stays open
   * past `probes` status probes resolve `{type: 'sync'}` with the server's current version.
   * Not invited to the round (participantsPerRound): nothing is sent; it waits for the round's end
   * (sending after all if an invitation comes first) and the outcome says `contributed: false`.
   */
  async contribute(model, samples) {
    const round = this.round;
    const byName = variablesByName(model);
    const names = this.manifest.flatMap((group) => group.weights.map((w) => w.name));
    const tensors = names.map((name) => {
      const variable = byName.get(name);
      return { name, shape: variable.shape, data: variable.read().dataSync() };
    });
    const frame = encodeWeights({ type: 'update', task: this.taskId, round, baseVersion: this.version, samples }, tensors,
      this.encoding);
    let accepted = false;
    let uninvited = false; // the server did not invite this session to the round: nothing is sent
    let probes = 0;
    for (;;) {
      try {
        if (!this.ws) {
          await this.reconnect();
          if (this.server.round !== round) return this.finished(round, uninvited, 'reconnected');
        }
        uninvited = !accepted && !this.invitedTo(round);
        if (!accepted && !uninvited) {
          const reply = this.next('accepted');
          reply.catch(() => {}); // an error while waiting for `update_go` rejects both waits; that one is thrown
          await sendUpdate(this.ws, frame, PART_BYTES, {
            announceFrom: this.announceFrom,
            granted: () => within(this.next('update_go'), this.limits().acceptedMs,
              `permission to send the update of round ${round}`),
          });
          try {
            await within(reply, this.limits().acceptedMs, `reply to the update of round ${round}`);
          } catch (error) {
            if (error.code !== 'duplicate') throw error; // sent again after a reconnect: it already counts
          }
          accepted = true;
        }
        if (this.lastEnd?.round === round) return this.finished(round, uninvited);
        // Not invited: a `participants` message may invite this session in place of one who left.
        const end = !uninvited ? this.next('round_closed', 'round_failed')
          : this.next('round_closed', 'round_failed', 'participants');
        await within(end, this.limits().roundMs, `end of round ${round}`);
        if (this.lastEnd?.round === round) return this.finished(round, uninvited);
      } catch (error) {
        if (error.code === 'not_invited') {
          this.invitation = { round, invited: false }; // the server knows better: wait for the round's end
          uninvited = true;
        } else if (error.code === 'stale_round') {
          const state = await this.probe();
          if (state || this.lastEnd?.round === round) return this.finished(round, uninvited, 'stale_round');
        } else if (error.code === 'timeout') {
          probes += 1;
          const state = await this.probe();
          if (this.lastEnd?.round === round || (state && state.round !== round) || probes >= this.recovery.probes) {
            return this.finished(round, uninvited, 'timeout');
          }
        } else if (error.code !== 'closed') {
          throw error;
        }
        // closed (or a probe that found the socket dead): the loop reconnects
      }
    }
  }

  /**
   * Asks the server's status within `statusMs`; resolves with it, or null after dropping a socket
   * that did not answer (the caller then reconnects).
   */
  async probe() {
    if (!this.ws) return null;
    try {
      const reply = this.next('status');
      this.ws.send(JSON.stringify({ type: 'status' }));
      return await within(reply, this.limits().statusMs, 'status reply');
    } catch (error) {
      if (!RECOVERABLE.has(error.code)) throw error;
      this.drop();
      return null;
    }
  }

  /** `ended`, marked `contributed: false` when this session sent nothing to the round (it was not invited). */
  finished(round, uninvited, reason = null) {
    const outcome = this.ended(round, reason);
    return uninvited ? { ...outcome, contributed: false } : outcome;
  }

  /** The outcome of round `round`: its own end when the page saw it, else a sync to the server's state. */
  ended(round, reason = null) {
    const end = this.lastEnd?.round === round ? this.lastEnd : null;
    this.round = this.server.round;
    // Only a round that made the version the page continues from has a result to score: a failed round
    // made none, a superseded one's result is not current, a sync names no round's result.
    this.evaluable = end && end.type === 'round_closed' && !end.superseded && (end.resultVersion ?? end.version) === end.version
      ? { round: end.round, version: end.version } : null;
    if (end) return { ...end };
    const outcome = { type: 'sync', reason, round, version: this.server.version, nextRound: this.server.round };
    this.onEvent(outcome);
    return outcome;
  }

  /**
   * Federated evaluation: reports the scores of the last round's result on the page's validation split
   * (numbers only, never data) as `{type: 'evaluation', round, version, loss, accuracy, samples}`, once per
   * round. Resolves null when there is nothing to report (the round made no model to score, or the split
   * is empty), else `{round, version, loss, accuracy, samples, recorded, reason?}`: `samples` as the
   * server counted it, `recorded` false (with the reason) when it refused or did not answer. Never throws:
   * a missed report must not stop training.
   * @param {{loss: number, accuracy: number|null, samples: number}} scores
   */
  async reportEvaluation({ loss, accuracy, samples }) {
    const target = this.evaluable;
    this.evaluable = null;
    if (!target || !(samples >= 1) || !Number.isFinite(loss)) return null;
    const message = { type: 'evaluation', round: target.round, version: target.version, loss,
      accuracy: Number.isFinite(accuracy) ? accuracy : null, samples };
    const report = { round: target.round, version: target.version, loss, accuracy: message.accuracy, samples };
    if (!this.ws) return { ...report, recorded: false, reason: 'The connection to the server is closed.' };
    try {
      const reply = this.next('evaluation_recorded');
      this.ws.send(JSON.stringify(message));
      const recorded = await within(reply, this.limits().statusMs, 'reply to the evaluation');
      return { ...report, samples: recorded.samples ?? samples, recorded: true };
    } catch (error) {
      return { ...report, recorded: false, reason: error.message };
    }
  }

  /** Asks for the round's state (nothing while the session is between two connections). */
  status() {
    this.ws?.send(JSON.stringify({ type: 'status' }));
  }

  close() {
    this.drop();
  }
}
