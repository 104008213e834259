/**
 * DOM rendering of an evaluation (evaluate.js's result): accuracy, confusion matrix,
 * per-class precision/recall, per-sample results, and of prediction rows.
 * @module evaluate_ui
 */

import { el } from './trainer_ui.js';

const MAX_ROWS = 50;
const MAX_CONFUSION_LABELS = 20;

/** @param {number|null|undefined} v */
const pct = (v) => (v == null ? '–' : `${(v * 100).toFixed(1)} %`);
/** @param {number|null|undefined} v */
const num = (v) => (v == null ? '–' : Number(v).toFixed(4));

/**
 * Per-sample or prediction rows as a table (the first MAX_ROWS).
 * @param {object[]} rows
 * @returns {HTMLElement}
 */
export function rowsTable(rows) {
  const columns = [];
  for (const row of rows.slice(0, MAX_ROWS)) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  const cell = (v) => (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : v == null ? '' : String(v));
  const table = el('table', { class: 'striped results-table' }, [
    el('thead', {}, [el('tr', {}, columns.map((c) => el('th', { scope: 'col', text: c })))]),
    el('tbody', {}, rows.slice(0, MAX_ROWS).map((row) => el('tr', {
      class: row.label != null && row.predicted != null && String(row.label) !== String(row.predicted) ? 'wrong' : null,
    }, columns.map((c) => el('td', { text: cell(row[c]) }))))),
  ]);
  const wrap = el('div', { class: 'table-scroll results-scroll' }, [table]);
  if (rows.length > MAX_ROWS) wrap.append(el('p', { class: 'muted small', text: `First ${MAX_ROWS} of ${rows.length} rows; the CSV has them all.` }));
  return wrap;
}

/**
 * The confusion matrix: rows are true labels, columns predicted labels.
 * @param {string[]} labels
 * @param {number[][]} confusion
 * @returns {HTMLElement}
 */
export function confusionTable(labels, confusion) {
  const max = Math.max(1, ...confusion.flat());
  const table = el('table', { class: 'confusion', 'aria-label': 'Confusion matrix' }, [
    el('thead', {}, [el('tr', {}, [el('th', { scope: 'col', text: 'true ↓ / predicted →' }),
      ...labels.map((l) => el('th', { scope: 'col', text: l }))])]),
    el('tbody', {}, confusion.map((row, r) => el('tr', {}, [el('th', { scope: 'row', text: labels[r] }),
      ...row.map((n, c) => {
        const td = el('td', { text: String(n), class: r === c ? 'diag' : null });
        td.style.setProperty('--shade', String(n / max));
        return td;
      })]))),
  ]);
  return el('div', { class: 'table-scroll' }, [table]);
}

/**
 * Draw an evaluation result.
 * @param {HTMLElement} root
 * @param {any} result from evaluate.js's evaluate()
 * @param {() => void} onDownload
 */
export function renderEvaluation(root, result, onDownload) {
  const facts = el('dl', { class: 'progress-facts eval-facts' }, [
    el('div', {}, [el('dt', { text: 'Accuracy' }), el('dd', { id: 'eval-accuracy', text: pct(result.accuracy) })]),
    el('div', {}, [el('dt', { text: result.kind === 'regression' ? 'Mean squared error' : 'Loss' }), el('dd', { text: num(result.loss) })]),
    el('div', {}, [el('dt', { text: 'Samples' }), el('dd', { text: String(result.count) })]),
  ]);
  const download = el('button', { type: 'button', class: 'secondary outline', id: 'eval-download', text: 'Download results (CSV)' });
  download.addEventListener('click', onDownload);
  root.replaceChildren(facts);
  if (result.confusion && result.confusion.length && result.labels.length <= MAX_CONFUSION_LABELS) {
    root.append(el('h3', { text: 'Confusion matrix' }), confusionTable(result.labels, result.confusion));
  }
  if (result.perClass && result.perClass.length && result.perClass.length <= MAX_CONFUSION_LABELS) {
    root.append(el('h3', { text: 'Per class' }), rowsTable(result.perClass));
  }
  root.append(el('h3', { text: 'Per sample' }), rowsTable(result.perSample || []), download);
}

/**
 * Draw prediction rows.
 * @param {HTMLElement} root
 * @param {object[]} rows from evaluate.js's predict()
 * @param {() => void} onDownload
 */
export function renderPredictions(root, rows, onDownload) {
  const download = el('button', { type: 'button', class: 'secondary outline', id: 'predict-download', text: 'Download predictions (CSV)' });
  download.addEventListener('click', onDownload);
  root.replaceChildren(el('h3', { text: `Predictions (${rows.length})` }), rowsTable(rows), download);
}
