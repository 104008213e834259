import assert from 'node:assert/strict';
import { test } from 'node:test';

import { chartSeries, facts, fetchAllRounds, formatBytes, formatDuration } from '../../static/disco/round_history.js';

const row = (number, status, extra = {}) => ({
  number, scheme: 'federated', status, message: '', openedAt: null, closedAt: null, durationSeconds: 2,
  contributors: 3, selectedPeers: null, dropouts: null, bytesReceived: 100 * number, baseVersion: null,
  resultVersion: null, valLoss: null, valAccuracy: null, valSamples: null, ...extra,
});

test('chart series run oldest first, with null where a value is unknown', () => {
  const rows = [row(3, 'open'), row(2, 'failed'), row(1, 'closed', { valAccuracy: 0.75, valLoss: 0.5 })];
  const series = chartSeries(rows);
  assert.deepEqual(series.labels, ['1', '2', '3']);
  assert.deepEqual(series.valAccuracy, [0.75, null, null]);
  assert.deepEqual(series.bytes, [100, 200, 300]);
  assert.deepEqual(series.duration, [2, 2, null]); // an open round has no duration yet
  assert.equal(series.hasMetrics, true);
  const peers = chartSeries([row(1, 'closed', { scheme: 'decentralized', contributors: 2, selectedPeers: 4, dropouts: 1 })]);
  assert.deepEqual([peers.participants, peers.dropouts], [[4], [1]]);
});

test('facts count finished and failed rounds and take the newest accuracy', () => {
  const rows = [row(4, 'open'), row(3, 'failed'), row(2, 'closed', { valAccuracy: 0.8 }), row(1, 'closed', { valAccuracy: 0.6 })];
  const f = facts(rows);
  assert.deepEqual([f.finished, f.failed, f.last.number, f.accuracy], [3, 1, 3, 0.8]);
});

test('fetchAllRounds follows next links and reports the API detail on errors', async () => {
  const pages = {
    '/p1': { results: [row(2, 'closed')], next: '/p2' },
    '/p2': { results: [row(1, 'closed')], next: null },
  };
  const fake = async (url) => ({ ok: true, json: async () => pages[url] });
  assert.deepEqual((await fetchAllRounds('/p1', fake)).map((r) => r.number), [2, 1]);
  const refused = async () => ({ ok: false, status: 403, json: async () => ({ detail: 'Only the owner' }) });
  await assert.rejects(fetchAllRounds('/p1', refused), /Only the owner/);
});

test('formats', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(3 * 1024 * 1024), '3.0 MB');
  assert.equal(formatDuration(90), '90.0 s');
  assert.equal(formatDuration(600), '10.0 min');
});
