/**
 * The round dashboard's data, without DOM: fetching every page of `/api/tasks/<id>/rounds/`,
 * turning rows into chart series, and the words and numbers the table shows.
 * Its DOM half is pages/rounds.js.
 * @module round_history
 */

/**
 * @typedef {object} RoundRow  One row of GET /api/tasks/<id>/rounds/ (see aggregation/round_history.py).
 * @property {number} number
 * @property {string} scheme
 * @property {string} status
 * @property {string} message
 * @property {string|null} openedAt
 * @property {string|null} closedAt
 * @property {number|null} durationSeconds
 * @property {number|null} contributors
 * @property {number|null} selectedPeers
 * @property {number|null} dropouts
 * @property {number|null} bytesReceived
 * @property {{number: number, modelUrl: string}|null} baseVersion
 * @property {{number: number, modelUrl: string}|null} resultVersion
 * @property {number|null} valLoss
 * @property {number|null} valAccuracy
 * @property {number|null} valSamples
 */

export const FINISHED = new Set(['closed', 'superseded', 'failed']);

/**
 * Every row, newest first, following the API's `next` links.
 * @param {string} url the first page, e.g. `/api/tasks/t/rounds/?page_size=500`
 * @param {typeof fetch} [fetchImpl]
 * @returns {Promise<RoundRow[]>}
 */
export async function fetchAllRounds(url, fetchImpl = globalThis.fetch) {
  const rows = [];
  let next = url;
  for (let pages = 0; next && pages < 100; pages += 1) {
    const response = await fetchImpl(next, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (!response.ok) {
      let detail = `${response.status}`;
      try { detail = (await response.json()).detail ?? detail; } catch { /* not JSON */ }
      throw new Error(`Could not read the rounds: ${detail}`);
    }
    const body = await response.json();
    rows.push(...body.results);
    next = body.next;
  }
  return rows;
}

/**
 * The charts' series, oldest round first: one label per round, null where a value is unknown.
 * Participants are the federated contributors, or the peers a decentralized round selected.
 * @param {RoundRow[]} rows newest first, as the API gives them
 */
export function chartSeries(rows) {
  const ordered = [...rows].reverse();
  const pick = (/** @type {(r: RoundRow) => any} */ f) => ordered.map((r) => f(r) ?? null);
  return {
    labels: ordered.map((r) => `${r.number}`),
    valAccuracy: pick((r) => r.valAccuracy),
    valLoss: pick((r) => r.valLoss),
    participants: pick((r) => (r.scheme === 'decentralized' ? r.selectedPeers : r.contributors)),
    dropouts: pick((r) => r.dropouts),
    duration: pick((r) => (FINISHED.has(r.status) ? r.durationSeconds : null)),
    bytes: pick((r) => r.bytesReceived),
    hasMetrics: ordered.some((r) => r.valAccuracy != null || r.valLoss != null),
  };
}

/** @param {RoundRow[]} rows */
export function facts(rows) {
  const finished = rows.filter((r) => FINISHED.has(r.status));
  const measured = rows.find((r) => r.valAccuracy != null);
  return {
    finished: finished.length,
    failed: rows.filter((r) => r.status === 'failed').length,
    last: finished[0] ?? null,
    accuracy: measured ? measured.valAccuracy : null,
  };
}

/** @param {number|null} bytes */
export function formatBytes(bytes) {
  if (bytes == null) return '–';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** @param {number|null} seconds */
export function formatDuration(seconds) {
  if (seconds == null) return '–';
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** @param {number|null} value  @param {number} digits */
export function formatNumber(value, digits = 3) {
  return value == null ? '–' : value.toFixed(digits);
}
