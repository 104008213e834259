/**
 * The training page's collaborative half: joining a federated round (federated.js) or the peers of a
 * decentralized task (decentralized.js), the trainer's `onRoundEnd` hook each scheme gives, and their
 * status lines. The sessions' logic is theirs; this module only wires it to the page.
 *
 * `window.discoFederated` = {events, rounds, participantId, evaluations}; `window.discoPeers` = {events, rounds,
 * participantId, privacy, evaluations}: each round's {round, peers, used, fellBack, samples, sent, weights} (sent =
 * this page's update, weights = the aggregated result, as plain arrays for tests); `evaluations`: what
 * the page reported of each round's result on its validation split (federated evaluation).
 * @module pages/train_collab
 */

import { FederatedSession } from '../federated.js';
import { DecentralizedSession, privateUpdate, readWeights, writeWeights } from '../decentralized.js';

/**
 * The page's collaboration, for one task.
 * @param {object} page what it needs of the page
 * @param {any} page.task the task JSON
 * @param {() => any} page.getModel the page's model (its weights are what the sessions read and write)
 * @param {() => number} page.samples the number of training samples (the update's weight)
 * @param {(message: string) => void} page.log
 * @param {(id: string, text: string, kind?: string) => void} page.setStatus
 * @returns {{active: () => boolean, join: () => Promise<{session: any, onRoundEnd: Function,
 *   onRoundEvaluated: Function}>}}
 */
export function collaboration({ task, getModel, samples, log, setStatus }) {
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
  const taskId = task.id;

  const federated = { events: [], rounds: [], participantId: null, participantsPerRound: null, evaluations: [] };
  globalThis.discoFederated = federated;

  function collaborative() {
    const toggle = /** @type {HTMLInputElement|null} */ (document.getElementById('collab-toggle'));
    return Boolean(toggle && toggle.checked && task.trainingInformation.scheme === 'federated');
  }

  /** The words for a round this page is not invited to (the task's participantsPerRound). */
  function notInvited(round, perRound) {
    const per = perRound ? ` (${perRound} participant${perRound === 1 ? '' : 's'} per round)` : '';
    return `Not invited to round ${round}${per}; training locally until invited.`;
  }

  function showFederated(message) {
    federated.events.push(message);
    const waiting = message.waitingFor > 0 ? ` — waiting for ${message.waitingFor} more participant${message.waitingFor === 1 ? '' : 's'}` : '';
    const perRound = message.participantsPerRound ?? federated.participantsPerRound;
    if ('participantsPerRound' in message) federated.participantsPerRound = message.participantsPerRound;
    if (['welcome', 'participants', 'status'].includes(message.type) && message.invited === false) {
      setStatus('fed-status', notInvited(message.round, perRound), 'busy');
    } else if (['round_closed', 'round_failed'].includes(message.type) && message.invited === false) {
      const how = message.type === 'round_closed' ? `closed (version ${message.version})` : `failed: ${message.reason}`;
      setStatus('fed-status', `Round ${message.round} ${how}. ${notInvited(message.nextRound, perRound)}`, 'busy');
    } else if (message.type === 'welcome' || message.type === 'participants' || message.type === 'status') {
      setStatus('fed-status', `Round ${message.round}: ${message.participants} participant${message.participants === 1 ? '' : 's'} connected${waiting}.`, message.waitingFor > 0 ? 'busy' : 'ok');
    } else if (message.type === 'round_closed') {
      setStatus('fed-status', `Round ${message.round} closed: ${message.contributors} participants averaged into version ${message.version}.`, 'ok');
    } else if (message.type === 'round_failed') {
      setStatus('fed-status', `Round ${message.round} failed: ${message.reason}, continuing from version ${message.version}.`, 'error');
    } else if (message.type === 'error' && !['stale_round', 'duplicate', 'not_invited'].includes(message.code)
      && message.about !== 'evaluation') { // a refused evaluation is logged by evaluationReporter
      setStatus('fed-status', `The server refused an update: ${message.reason}`, 'error');
    } else if (message.type !== 'closed') {
      const recovery = describeRecovery(message);
      if (recovery) setStatus('fed-status', recovery.text, recovery.tone);
    }
    $('fed-status').hidden = false;
  }

  /**
   * The trainer's onRoundEvaluated hook for `session` (either scheme): reports the round's global model's
   * scores on the validation split (numbers only), logs them and keeps them in `kept`.
   */
  function evaluationReporter(session, kept) {
    return async (_round, { loss, acc, samples }) => {
      const report = await session.reportEvaluation({ loss, accuracy: acc, samples });
      if (!report) return; // the round made no model this page continues from (failed, superseded, synced)
      kept.push(report);
      const accuracy = report.accuracy != null ? `, accuracy ${report.accuracy.toFixed(4)}` : '';
      log(`Round ${report.round}: validation loss ${report.loss.toFixed(4)}${accuracy} on ${report.samples} samples `
        + (report.recorded ? '(reported).' : `(not reported: ${report.reason}).`));
    };
  }

  /** The words for a session's recovery events (federated.js, decentralized.js), or null. */
  function describeRecovery(message) {
    if (message.type === 'reconnecting') {
      return { text: `Connection lost: reconnecting… (attempt ${message.attempt} of ${message.attempts})`, tone: 'busy' };
    }
    if (message.type === 'reconnected') {
      const version = message.currentVersion != null ? `, global version ${message.currentVersion}` : '';
      return { text: `Reconnected: round ${message.round}${version}.`, tone: 'ok' };
    }
    if (message.type === 'sync') {
      const why = { stale_round: 'the round had moved on', reconnected: 'the round ended while reconnecting',
        timeout: 'the round took longer than its deadline' }[message.reason] ?? message.reason;
      return { text: `Synced (${why}): continuing from global version ${message.version}, round ${message.nextRound}.`, tone: 'ok' };
    }
    return null;
  }

  /** Connects to the task's federated round and returns the trainer's onRoundEnd hook. */
  async function joinFederation() {
    const session = new FederatedSession(taskId, { onEvent: showFederated,
      deadlineSeconds: task.trainingInformation.roundDeadlineSeconds });
    const welcome = await session.connect();
    federated.participantId = welcome.participantId;
    await session.syncModel(getModel());
    log(`Joined round ${welcome.round} as a participant; starting from global version ${welcome.currentVersion}.`);
    if (welcome.invited === false) log(notInvited(welcome.round, welcome.participantsPerRound));
    let roundStart = privacy() ? readWeights(getModel()).vector : null;
    return {
      session,
      onRoundEnd: async (round, m) => {
        const invited = session.invitedTo(session.round);
        setStatus('train-status', invited ? `Round ${round} trained: sending the update and waiting for the other participants…`
          : `Round ${round} trained locally. ${notInvited(session.round, session.participantsPerRound)} Waiting for round ${session.round} to end…`, 'busy');
        if (roundStart) writeWeights(m, privateUpdate(readWeights(m).vector, roundStart, privacy()));
        // Whatever happened to the round (closed, failed, or the page had to sync), continue from the
        // version the session names: the round's result, the last good one, or the server's current one.
        const outcome = await session.contribute(m, samples());
        await session.applyVersion(m, outcome.version);
        if (roundStart) roundStart = readWeights(m).vector;
        federated.rounds.push({ round: outcome.round, version: outcome.version, contributors: outcome.contributors,
          outcome: outcome.type, reason: outcome.reason, contributed: outcome.contributed !== false });
        if (outcome.contributed === false) {
          log(`${notInvited(outcome.round, session.participantsPerRound)} Round ${outcome.round} ended without this page's `
            + `update; continuing from global version ${outcome.version}.`);
        } else if (outcome.type === 'round_failed') {
          log(`Round ${outcome.round} failed: ${outcome.reason}, continuing from version ${outcome.version}.`);
        } else if (outcome.type === 'sync') {
          log(`Round ${outcome.round}: synced with the server (${outcome.reason}); continuing from global version ${outcome.version}.`);
        } else {
          log(`Round ${outcome.round}: continuing from global version ${outcome.version} (${outcome.contributors} participants).`);
        }
        setStatus('train-status', 'Training…', 'busy');
        await showPrivacySpent();
      },
      onRoundEvaluated: evaluationReporter(session, federated.evaluations),
    };
  }

  // ------------------------------------------------------------------------------------------
  // 2b. Decentralized training (peers exchange updates over WebRTC or the relay, decentralized.js)
  //     and differential privacy (both schemes). `window.discoPeers` = {events, rounds, participantId,
  //     privacy}: each round's {round, peers, used, fellBack, samples, sent, weights} (sent = this page's
  //     update, weights = the aggregated result, as plain arrays for tests).

  const peers = { events: [], rounds: [], participantId: null, privacy: [], evaluations: [] };
  globalThis.discoPeers = peers;

  function withPeers() {
    const toggle = /** @type {HTMLInputElement|null} */ (document.getElementById('peers-toggle'));
    return Boolean(toggle && toggle.checked && task.trainingInformation.scheme === 'decentralized');
  }

  /** The task's differential-privacy settings, or null. */
  function privacy() {
    const settings = task.trainingInformation.privacy;
    return settings && settings.clippingRadius != null ? settings : null;
  }

  /** Shows the (epsilon, delta) spent, from the server's accountant and the rounds the server recorded. */
  async function showPrivacySpent() {
    if (!privacy() || !document.getElementById('privacy-status')) return;
    try {
      const response = await fetch(`/api/tasks/${encodeURIComponent(taskId)}/privacy/`);
      const body = await response.json();
      if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
      peers.privacy.push(body);
      const epsilon = Number.isFinite(body.epsilon) ? body.epsilon.toPrecision(3) : '∞';
      const rounds = body.rounds;
      setStatus('privacy-status', `Differential privacy: (ε, δ) spent after ${rounds} round${rounds === 1 ? '' : 's'} (as the server recorded them): `
        + `(${epsilon}, ${body.delta}) — clipping ${body.clippingRadius}, noise scale ${body.noiseScale}. `
        + 'Smaller ε means more privacy.', 'ok');
    } catch (error) {
      setStatus('privacy-status', `The privacy spent could not be computed: ${error.message || error}`, 'error');
    }
  }

  function showPeers(message) {
    if (message.type === 'payload') return; // one per peer message: too many for the log
    peers.events.push(message);
    const waiting = message.waitingFor > 0 ? ` — waiting for ${message.waitingFor} more` : '';
    if (['welcome', 'participants', 'status'].includes(message.type)) {
      setStatus('peers-status', `Round ${message.round}: ${message.participants} peer${message.participants === 1 ? '' : 's'} `
        + `connected, ${message.ready ?? 0} ready${waiting}.`, message.waitingFor > 0 ? 'busy' : 'ok');
    } else if (message.type === 'peers') {
      setStatus('peers-status', `Round ${message.round}: exchanging with ${message.peers.length - 1} other peer${message.peers.length === 2 ? '' : 's'}…`, 'busy');
    } else if (message.type === 'peer_left') {
      log(`Peer ${message.peer} left round ${message.round}: the others stop waiting for it.`);
    } else if (message.type === 'transport') {
      log(`Peer ${message.peer}: using the ${message.used}${message.reason ? ` (${message.reason})` : ''}.`);
    } else if (message.type === 'reconnecting' || message.type === 'reconnected') {
      const recovery = describeRecovery(message);
      setStatus('peers-status', recovery.text, recovery.tone);
      log(recovery.text);
    } else if (message.type === 'peer_error' || (message.type === 'error' && message.about !== 'evaluation')) {
      log(`Peer exchange: ${message.reason}`);
    } else if (message.type === 'exchanged') {
      const how = { webrtc: 'direct WebRTC connections', relay: 'the server relay', mixed: 'WebRTC and the relay', none: 'no exchange' }[message.used] ?? message.used;
      setStatus('peers-status', `Round ${message.round}: averaged with ${message.peers.length} peer${message.peers.length === 1 ? '' : 's'} over ${how}.`
        + (message.fellBack ? ` ${message.fellBack}` : ''), message.fellBack ? 'error' : 'ok');
    }
    $('peers-status').hidden = false;
  }

  /** Connects to the task's signalling server and returns the trainer's onRoundEnd hook. */
  async function joinPeers() {
    const forceRelay = new URLSearchParams(globalThis.location.search).get('relay') === 'force';
    const session = new DecentralizedSession(taskId, { onEvent: showPeers, forceRelay, privacy: privacy() });
    const welcome = await session.connect();
    peers.participantId = welcome.participantId;
    const mode = welcome.secure ? 'secure aggregation' : 'the sample-weighted mean';
    log(`Joined the peers of round ${welcome.round} as ${welcome.participantId} (${mode}${forceRelay ? ', relay forced' : ''}).`);
    let roundStart = readWeights(getModel()).vector;
    return {
      session,
      onRoundEnd: async (round, m) => {
        setStatus('train-status', `Round ${round} trained: waiting for the other peers and exchanging updates…`, 'busy');
        const result = await session.exchange(m, samples(), roundStart);
        roundStart = result.weights;
        peers.rounds.push({ round: result.round, peers: result.peers, used: result.used, fellBack: result.fellBack,
          samples: result.samples, sent: Array.from(result.sent), weights: Array.from(result.weights) });
        log(`Round ${result.round}: averaged with ${result.peers.length} peer(s) over ${result.used}.`
          + (result.fellBack ? ` ${result.fellBack}` : ''));
        setStatus('train-status', 'Training…', 'busy');
        if (privacy()) await showPrivacySpent();
      },
      onRoundEvaluated: evaluationReporter(session, peers.evaluations),
    };
  }

  return {
    /** Whether the participant chose to train with others (the scheme's switch is on). */
    active: () => collaborative() || withPeers(),
    /** Join the federated round or the peers; returns the session and the trainer's onRoundEnd hook. */
    join: () => (collaborative() ? joinFederation() : joinPeers()),
  };
}
