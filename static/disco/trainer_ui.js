/**
 * DOM parts of connecting data: file pickers with drag-and-drop per data type, and the
 * rendering of a LoadedData's status, problems and preview. The loaders themselves live in
 * data.js (no DOM); `loadConnected` maps what the participant connected onto them.
 * @module trainer_ui
 */

import {
  loadImagesByGroup, loadImagesWithCsv, loadTabular, loadText, loadUnlabelledImages,
} from './data.js';

/**
 * Create an element.
 * @param {string} tag
 * @param {Record<string, any>} [props] attributes (`text` sets textContent, `class` the class)
 * @param {(Node|string)[]} [children]
 * @returns {HTMLElement}
 */
export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children) node.append(child);
  return node;
}

/**
 * What the participant connected, by slot: {mode, slots: {slotName: File[]}}.
 * Slots: "group:<label>" (images of one label), "csv" (labels CSV or tabular CSV),
 * "images" (images for CSV mode or unlabelled prediction), "text" (.txt files).
 * @typedef {{mode: 'group'|'csv'|'unlabelled'|'tabular'|'text', slots: Record<string, File[]>}} Connection
 */

/**
 * File pickers with drop zones for one task's data type. `onChange(connection)` fires after
 * each change. Picking or dropping adds files to a slot (same name replaces); "Clear" empties all.
 */
export class DataConnector {
  /**
   * @param {HTMLElement} root
   * @param {any} task the task JSON
   * @param {{onChange: (c: Connection) => void, id: string, allowUnlabelled?: boolean}} options
   */
  constructor(root, task, options) {
    this.root = root;
    this.task = task;
    this.options = options;
    const type = task.trainingInformation.dataType;
    this.mode = type === 'image' ? 'group' : type;
    /** @type {Record<string, File[]>} */
    this.slots = {};
    this.render();
  }

  /** @returns {Connection} */
  get connection() {
    return { mode: /** @type {any} */ (this.mode), slots: this.slots };
  }

  /** @returns {number} files connected in the current mode */
  get fileCount() {
    return Object.values(this.slots).reduce((n, files) => n + files.length, 0);
  }

  /** Forget every file. */
  clear() {
    this.slots = {};
    this.render();
    this.options.onChange(this.connection);
  }

  /**
   * Replace the connection (e.g. sample data) and notify.
   * @param {Connection} connection
   */
  set(connection) {
    this.mode = connection.mode;
    this.slots = connection.slots;
    this.render();
    this.options.onChange(this.connection);
  }

  /**
   * Add files to a slot (a file of the same name replaces the older one).
   * @param {string} slot
   * @param {File[]} files
   */
  add(slot, files) {
    const byName = new Map((this.slots[slot] || []).map((f) => [f.name, f]));
    for (const file of files) byName.set(file.name, file);
    this.slots[slot] = [...byName.values()];
    this.render();
    this.options.onChange(this.connection);
  }

  /** Draw the pickers of the current mode. */
  render() {
    const info = this.task.trainingInformation;
    const id = this.options.id;
    this.root.replaceChildren();
    if (info.dataType === 'image') {
      const modes = [['group', 'One group per label'], ['csv', 'A CSV of filename,label + the images']];
      if (this.options.allowUnlabelled) modes.push(['unlabelled', 'Images without labels (predict)']);
      const fieldset = el('fieldset', { class: 'mode-switch' }, [el('legend', { text: 'How are your images labelled?' })]);
      for (const [value, label] of modes) {
        const input = el('input', { type: 'radio', name: `${id}-mode`, value, checked: this.mode === value });
        input.addEventListener('change', () => { this.mode = value; this.slots = {}; this.render(); this.options.onChange(this.connection); });
        fieldset.append(el('label', {}, [input, ` ${label}`]));
      }
      this.root.append(fieldset);
      if (this.mode === 'group') {
        const grid = el('div', { class: 'drop-grid' });
        for (const label of info.LABEL_LIST || []) {
          grid.append(this.dropZone(`group:${label}`, `Label “${label}”`, 'image/*', true, 'images'));
        }
        this.root.append(grid);
      } else if (this.mode === 'csv') {
        this.root.append(el('div', { class: 'drop-grid two' }, [
          this.dropZone('csv', 'Labels CSV (filename,label)', '.csv,text/csv', false, 'CSV file'),
          this.dropZone('images', 'Images', 'image/*', true, 'images'),
        ]));
      } else {
        this.root.append(el('div', { class: 'drop-grid one' }, [this.dropZone('images', 'Images', 'image/*', true, 'images')]));
      }
    } else if (info.dataType === 'tabular') {
      this.root.append(el('div', { class: 'drop-grid one' }, [this.dropZone('csv', 'CSV file', '.csv,text/csv', false, 'CSV file')]));
    } else {
      this.root.append(el('div', { class: 'drop-grid one' }, [this.dropZone('text', 'Text files (.txt)', '.txt,text/plain', true, 'text files')]));
    }
    if (this.fileCount) {
      const clear = el('button', { type: 'button', class: 'secondary outline small-button', text: 'Clear files' });
      clear.addEventListener('click', () => this.clear());
      this.root.append(clear);
    }
  }

  /**
   * A labelled drop zone holding a file input.
   * @param {string} slot
   * @param {string} title
   * @param {string} accept
   * @param {boolean} multiple
   * @param {string} noun what the files are, for the hint
   * @returns {HTMLElement}
   */
  dropZone(slot, title, accept, multiple, noun) {
    const files = this.slots[slot] || [];
    const inputId = `${this.options.id}-${slot.replace(/[^a-z0-9_-]/gi, '_')}`;
    const input = el('input', { type: 'file', id: inputId, accept, multiple, 'data-slot': slot, class: 'visually-hidden' });
    input.addEventListener('change', () => {
      if (input.files && input.files.length) this.add(slot, [...input.files]);
    });
    const summary = files.length
      ? `${files.length} file${files.length === 1 ? '' : 's'}: ${files.slice(0, 3).map((f) => f.name).join(', ')}${files.length > 3 ? '…' : ''}`
      : `Drop ${noun} here or click to choose`;
    const zone = el('label', { for: inputId, class: `drop-zone${files.length ? ' has-files' : ''}`, 'data-slot': slot }, [
      input, el('strong', { text: title }), el('span', { class: 'drop-hint', text: summary }),
    ]);
    zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.classList.add('dragging'); });
    zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
    zone.addEventListener('drop', (event) => {
      event.preventDefault();
      zone.classList.remove('dragging');
      const dropped = [...(event.dataTransfer?.files || [])];
      if (dropped.length) this.add(slot, multiple ? dropped : dropped.slice(0, 1));
    });
    return zone;
  }
}

/**
 * Run data.js's loader that fits what was connected.
 * @param {Connection} connection
 * @param {any} task
 * @param {{labelled?: boolean, state?: object, shuffle?: boolean}} [options] labelled false: prediction data;
 *   state: statistics saved with a model (testing reuses them); shuffle false: keep the files' order (test data)
 * @returns {Promise<any>} LoadedData (count 0 and a problem when nothing usable is connected)
 */
export async function loadConnected(connection, task, options = {}) {
  const { mode, slots } = connection;
  const labelled = options.labelled !== false;
  const order = options.shuffle === false ? { shuffle: false } : {};
  if (mode === 'group') {
    const groups = {};
    for (const [slot, files] of Object.entries(slots)) if (slot.startsWith('group:') && files.length) groups[slot.slice(6)] = files;
    return loadImagesByGroup(groups, task, undefined, order);
  }
  if (mode === 'csv') {
    const [csv] = slots.csv || [];
    if (!csv) return missing('image', 'Labels CSV', 'Add the CSV file of "filename,label" lines.');
    return loadImagesWithCsv(csv, slots.images || [], task, undefined, order);
  }
  if (mode === 'unlabelled') return loadUnlabelledImages(slots.images || [], task, undefined, order);
  if (mode === 'tabular') {
    const [csv] = slots.csv || [];
    if (!csv) return missing('tabular', 'CSV file', 'Add a CSV file.');
    const options2 = { fileName: csv.name, labelled, ...order };
    if (options.state) options2.state = options.state;
    return loadTabular(await csv.text(), task, options2);
  }
  return loadText(slots.text || [], task, order);
}

function missing(dataType, file, message) {
  return { dataType, count: 0, x: new Float32Array(0), xShape: [], y: null, yShape: [], labels: [], counts: {},
    problems: [{ file, message }], preview: {}, state: {}, files: [], trainCount: 0 };
}

/**
 * List problems by file name (hidden when there are none).
 * @param {HTMLElement} list a <ul>
 * @param {{file: string, message: string}[]} problems
 */
export function renderProblems(list, problems) {
  list.replaceChildren(...problems.slice(0, 50).map((p) => el('li', {}, [el('strong', { text: p.file || 'Data' }), ' ', p.message])));
  if (problems.length > 50) list.append(el('li', { text: `…and ${problems.length - 50} more problems.` }));
  list.hidden = problems.length === 0;
}

/**
 * Counts per label (or per file) and the preview of the first samples.
 * @param {HTMLElement} root
 * @param {any} data LoadedData
 */
export function renderPreview(root, data) {
  root.replaceChildren();
  if (!data || !data.count) return;
  const counts = Object.entries(data.counts || {});
  if (counts.length) {
    root.append(el('ul', { class: 'count-chips', 'aria-label': 'Samples per label' },
      counts.slice(0, 30).map(([label, n]) => el('li', {}, [el('span', { text: label }), el('b', { text: String(n) })]))));
  }
  const preview = data.preview || {};
  if (preview.images && preview.images.length) {
    root.append(el('div', { class: 'image-preview' }, preview.images.slice(0, 12).map((img) => el('figure', {}, [
      el('img', { src: img.url, alt: img.file || '', width: 64, height: 64 }),
      el('figcaption', { text: img.label ?? img.file ?? '' }),
    ]))));
  } else if (preview.rows && preview.rows.length) {
    const columns = preview.columns || [];
    const table = el('table', { class: 'striped' }, [
      el('thead', {}, [el('tr', {}, columns.map((c) => el('th', { scope: 'col', text: c })))]),
      el('tbody', {}, preview.rows.slice(0, 5).map((row) => el('tr', {},
        (Array.isArray(row) ? row : columns.map((c) => row[c])).map((v) => el('td', { text: v == null ? '' : String(v) }))))),
    ]);
    root.append(el('div', { class: 'table-scroll' }, [table]));
  } else if (preview.lines && preview.lines.length) {
    root.append(el('div', { class: 'text-preview' }, preview.lines.slice(0, 5).map((l) => el('p', {}, [
      el('small', { class: 'muted', text: `${l.file} ` }), typeof l === 'string' ? l : l.line,
    ]))));
  }
}

/**
 * One line saying what is connected.
 * @param {any} data LoadedData
 * @returns {string}
 */
export function describeData(data) {
  if (!data || !data.count) return 'No usable data yet.';
  const kind = data.dataType === 'image' ? 'images' : data.dataType === 'tabular' ? 'rows' : 'text windows';
  const split = Number.isInteger(data.trainCount) && data.y
    ? ` (${data.trainCount} for training, ${data.count - data.trainCount} for validation)` : '';
  return `${data.count} ${kind} ready${split}.`;
}

/**
 * Offer text as a file download.
 * @param {string} name
 * @param {string} text
 * @param {string} [type]
 */
export function downloadText(name, text, type = 'text/csv') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el('a', { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
