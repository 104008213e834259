/**
 * DOM rendering of the model library (model_library.js keeps the models in IndexedDB).
 * @module library_ui
 */

import { el } from './trainer_ui.js';

/**
 * Metrics as a short text.
 * @param {Record<string, any>} metrics
 * @returns {string}
 */
export function metricsText(metrics) {
  const parts = [];
  if (metrics?.val_acc != null) parts.push(`val. accuracy ${(metrics.val_acc * 100).toFixed(1)} %`);
  else if (metrics?.acc != null) parts.push(`accuracy ${(metrics.acc * 100).toFixed(1)} %`);
  if (metrics?.val_loss != null) parts.push(`val. loss ${Number(metrics.val_loss).toFixed(3)}`);
  else if (metrics?.loss != null) parts.push(`loss ${Number(metrics.loss).toFixed(3)}`);
  if (metrics?.epochs != null) parts.push(`${metrics.epochs} epochs`);
  return parts.join(', ') || '–';
}

/**
 * Fill the library table.
 * @param {HTMLTableSectionElement} tbody
 * @param {Array<{key: string, name: string, metrics: object, savedAt: string, bytes: number}>} models
 * @param {{onDownload: (m: any) => void, onDelete: (m: any) => void, onUse: (m: any) => void}} actions
 */
export function renderLibrary(tbody, models, actions) {
  if (!models.length) {
    tbody.replaceChildren(el('tr', { class: 'empty' }, [el('td', { colspan: 4, class: 'muted', text: 'No saved model for this task yet.' })]));
    return;
  }
  tbody.replaceChildren(...models.map((model) => {
    const button = (text, cls, handler) => {
      const b = el('button', { type: 'button', class: `small-button ${cls}`, text, 'data-action': text.toLowerCase() });
      b.addEventListener('click', () => handler(model));
      return b;
    };
    const saved = new Date(model.savedAt);
    return el('tr', { 'data-key': model.key }, [
      el('td', { class: 'model-name', text: model.name }),
      el('td', {}, [el('time', { datetime: model.savedAt, text: Number.isNaN(saved.getTime()) ? model.savedAt : saved.toLocaleString() })]),
      el('td', { text: metricsText(model.metrics) }),
      el('td', { class: 'actions' }, [
        button('Evaluate', 'secondary outline', actions.onUse),
        button('Download', 'secondary outline', actions.onDownload),
        button('Delete', 'contrast outline', actions.onDelete),
      ]),
    ]);
  }));
}
