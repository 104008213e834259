/**
 * The round dashboard (templates/tasks/rounds.html): charts and a table of a task's rounds, kept live.
 *
 * Draws the rows the page carries (json_script "rounds-initial"), then listens on the read-only
 * observer socket (/ws/observe/<task>/); on every event of the task's group (a round closed, failed,
 * participants changed...) it fetches /api/tasks/<id>/rounds/ again and redraws. The socket reconnects
 * with backoff. State for tests and the console: `window.discoRounds`.
 * @module pages/rounds
 */

import {
  chartSeries, facts, fetchAllRounds, formatBytes, formatDuration, formatNumber,
} from '../round_history.js';

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const config = JSON.parse($('rounds-config').textContent);
const COLORS = { accuracy: '#17744a', loss: '#d9822b', participants: '#0a6ebd', dropouts: '#c0392b', duration: '#6a4fd0', bytes: '#0f9d8a' };
const STATUS_WORDS = {
  open: 'Open', aggregating: 'Aggregating', exchanging: 'Exchanging', closed: 'Closed', superseded: 'Superseded', failed: 'Failed',
};

const PEERS = config.scheme === 'decentralized';
// Decentralized rounds know the peers that left the exchange; federated ones the invited who sent nothing
// (participantsPerRound). Other federated rounds invite everyone connected, so dropouts are unknown.
const DROPOUTS = Boolean(config.showsDropouts);

const state = {
  /** @type {import('../round_history.js').RoundRow[]} */
  rows: JSON.parse($('rounds-initial').textContent),
  /** @type {object[]} the observer socket's events, newest last */
  events: [],
  fetches: 0,
  socket: 'connecting',
  error: '',
};
globalThis.discoRounds = state;

// --- charts ------------------------------------------------------------------------------------
const Chart = globalThis.Chart;
const baseOptions = (/** @type {object} */ scales) => ({
  animation: false,
  maintainAspectRatio: false,
  responsive: true,
  interaction: { mode: 'index', intersect: false },
  scales: { x: { title: { display: true, text: 'Round' } }, ...scales },
  plugins: { legend: { position: 'bottom', labels: { boxWidth: 14 } } },
});
const dataset = (label, color, extra = {}) => ({ label, data: [], borderColor: color, backgroundColor: color, ...extra });

function makeChart(id, type, datasets, scales) {
  if (!Chart) return null; // the table still works
  return new Chart($(id), { type, data: { labels: [], datasets }, options: baseOptions(scales) });
}

const charts = {
  metrics: makeChart('metrics-chart', 'line', [
    dataset('Validation accuracy', COLORS.accuracy, { yAxisID: 'acc', tension: 0.2, spanGaps: true }),
    dataset('Validation loss', COLORS.loss, { yAxisID: 'loss', borderDash: [5, 4], tension: 0.2, spanGaps: true }),
  ], {
    acc: { position: 'left', min: 0, max: 1, title: { display: true, text: 'accuracy' } },
    loss: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: 'loss' } },
  }),
  participants: makeChart('participants-chart', 'bar', [
    dataset(PEERS ? 'Selected peers' : 'Contributors', COLORS.participants),
    ...(DROPOUTS ? [dataset('Dropouts', COLORS.dropouts)] : []),
  ], { y: { beginAtZero: true, ticks: { precision: 0 } } }),
  duration: makeChart('duration-chart', 'bar', [dataset('Seconds', COLORS.duration)], { y: { beginAtZero: true } }),
  bytes: makeChart('bytes-chart', 'bar', [dataset('Bytes received', COLORS.bytes)], {
    y: { beginAtZero: true, ticks: { callback: (/** @type {number} */ v) => formatBytes(v) } },
  }),
};

function drawCharts() {
  const s = chartSeries(state.rows);
  const put = (chart, ...series) => {
    if (!chart) return;
    chart.data.labels = s.labels;
    series.forEach((values, i) => { chart.data.datasets[i].data = values; });
    chart.update('none');
  };
  put(charts.metrics, s.valAccuracy, s.valLoss);
  put(charts.participants, s.participants, ...(DROPOUTS ? [s.dropouts] : []));
  put(charts.duration, s.duration);
  put(charts.bytes, s.bytes);
  $('metrics-empty').hidden = s.hasMetrics;
}

// --- table and facts -----------------------------------------------------------------------------
/** @param {string} tag  @param {object} [props]  @param {(Node|string)[]} [children] */
function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function versionLink(version) {
  return version ? el('a', { href: version.modelUrl, title: `model.json of version ${version.number}` }, [`v${version.number}`]) : '';
}

const pad = (/** @type {number} */ n) => `${n}`.padStart(2, '0');

function when(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return el('time', { dateTime: iso, title: d.toString() }, [text]);
}

function rowElement(row) {
  const participants = row.scheme === 'decentralized' ? row.selectedPeers : row.contributors;
  const versions = el('td', {}, row.resultVersion
    ? [versionLink(row.baseVersion), row.baseVersion ? ' → ' : '', versionLink(row.resultVersion)]
    : [row.baseVersion ? 'from ' : '–', versionLink(row.baseVersion)]);
  if (row.aggregator) versions.append(el('small', { className: 'muted aggregator' }, [row.aggregator]));
  const tr = el('tr', { className: `is-${row.status}` }, [
    el('td', {}, [`${row.number}`]),
    el('td', {}, [el('span', { className: `badge status-badge status-${row.status}` }, [STATUS_WORDS[row.status] ?? row.status])]),
    el('td', {}, [when(row.openedAt)]),
    el('td', { className: 'num' }, [formatDuration(row.durationSeconds)]),
    el('td', { className: 'num' }, [participants == null ? '–' : `${participants}`]),
    ...(DROPOUTS ? [el('td', { className: 'num' }, [row.dropouts == null ? '–' : `${row.dropouts}`])] : []),
    el('td', { className: 'num' }, [formatBytes(row.bytesReceived)]),
    versions,
    el('td', { className: 'num' }, [row.valAccuracy == null && row.valLoss == null ? '–'
      : `${row.valAccuracy == null ? '–' : `${(100 * row.valAccuracy).toFixed(1)} %`} · ${formatNumber(row.valLoss)}`]),
    el('td', { className: 'outcome' }, [row.message || (row.status === 'open' ? 'Taking updates…' : '–')]),
  ]);
  tr.dataset.round = `${row.number}`;
  tr.dataset.status = row.status;
  return tr;
}

function drawTable() {
  const body = /** @type {HTMLTableElement} */ ($('rounds-table')).tBodies[0];
  if (!state.rows.length) return;
  body.replaceChildren(...state.rows.map(rowElement));
  const f = facts(state.rows);
  $('fact-finished').textContent = `${f.finished}`;
  $('fact-failed').textContent = `${f.failed}`;
  $('fact-last').textContent = f.last ? `${f.last.number}: ${STATUS_WORDS[f.last.status] ?? f.last.status}` : '–';
  $('fact-accuracy').textContent = f.accuracy == null ? '–' : `${(100 * f.accuracy).toFixed(1)} %`;
  // The open round starts from the current version (federated); a new one is current as soon as a round closes.
  const active = state.rows.find((r) => r.baseVersion && ['open', 'aggregating'].includes(r.status));
  if (active) $('fact-current').textContent = `v${active.baseVersion.number}`;
}

function draw() {
  drawTable();
  drawCharts();
}

// --- live updates --------------------------------------------------------------------------------
let refetching = null;
let again = false;

/** Fetch every row again; events that arrive meanwhile cause one more fetch, not one each. */
async function refresh() {
  if (refetching) { again = true; return refetching; }
  refetching = (async () => {
    do {
      again = false;
      try {
        state.rows = await fetchAllRounds(`${config.apiUrl}?page_size=${config.pageSize}`);
        state.fetches += 1;
        state.error = '';
        $('rounds-status').textContent = `Updated ${new Date().toLocaleTimeString()}.`;
        draw();
      } catch (error) {
        state.error = String(error.message ?? error);
        $('rounds-status').textContent = state.error;
      }
    } while (again);
    refetching = null;
  })();
  return refetching;
}

function showSocket(value, words) {
  state.socket = value;
  const badge = $('live-status');
  badge.dataset.state = value;
  badge.textContent = words;
}

let delay = 1000;
function listen() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${location.host}${config.socketPath}`);
  let refused = false;
  socket.addEventListener('message', (message) => {
    const data = JSON.parse(message.data);
    if (data.type === 'watching') {
      delay = 1000;
      showSocket('live', 'Live');
      refresh(); // catch up on what happened while the socket was away
    } else if (data.type === 'event') {
      state.events.push(data);
      refresh();
    } else if (data.type === 'error') {
      refused = true;
      showSocket('offline', 'Not live');
      $('rounds-status').textContent = data.reason;
    }
  });
  socket.addEventListener('close', () => {
    if (refused) return;
    showSocket('offline', 'Reconnecting…');
    setTimeout(listen, delay);
    delay = Math.min(delay * 2, 30000);
  });
}

draw();
listen();
