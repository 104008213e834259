/**
 * Live charts of training and validation loss and accuracy per epoch (Chart.js, the global
 * `Chart` loaded by a <script> tag). The plotted numbers are kept in `series` and exposed as
 * `window.discoCharts` so tests (and curious participants, from the console) can read them.
 * @module charts
 */

const COLORS = { train: '#0a6ebd', validation: '#d9822b' };

/**
 * @typedef {object} ChartSeries
 * @property {number[]} epochs
 * @property {(number|null)[]} loss
 * @property {(number|null)[]} val_loss
 * @property {(number|null)[]} acc
 * @property {(number|null)[]} val_acc
 */

/** Two line charts (loss, accuracy), each with a training and a validation line. */
export class TrainingCharts {
  /**
   * @param {HTMLCanvasElement} lossCanvas
   * @param {HTMLCanvasElement} accCanvas
   */
  constructor(lossCanvas, accCanvas) {
    /** @type {ChartSeries} */
    this.series = { epochs: [], loss: [], val_loss: [], acc: [], val_acc: [] };
    this.loss = this.makeChart(lossCanvas, 'loss', 'val_loss', false);
    this.acc = this.makeChart(accCanvas, 'acc', 'val_acc', true);
    globalThis.discoCharts = this;
  }

  /**
   * @param {HTMLCanvasElement} canvas
   * @param {string} trainKey
   * @param {string} valKey
   * @param {boolean} unit y axis fixed to 0..1
   */
  makeChart(canvas, trainKey, valKey, unit) {
    const Chart = globalThis.Chart;
    if (!Chart) return null; // the numbers are still kept in `series`
    return new Chart(canvas, {
      type: 'line',
      data: {
        labels: this.series.epochs,
        datasets: [
          { label: 'Training', data: this.series[trainKey], borderColor: COLORS.train, backgroundColor: COLORS.train, tension: 0.2, spanGaps: true },
          { label: 'Validation', data: this.series[valKey], borderColor: COLORS.validation, backgroundColor: COLORS.validation, borderDash: [5, 4], tension: 0.2, spanGaps: true },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        responsive: true,
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: { title: { display: true, text: 'Epoch' }, ticks: { precision: 0 } },
          y: unit ? { min: 0, max: 1 } : { beginAtZero: true },
        },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 14 } } },
      },
    });
  }

  /**
   * Plot one epoch.
   * @param {import('./trainer.js').EpochLogs} logs
   */
  addEpoch(logs) {
    this.series.epochs.push(this.series.epochs.length + 1);
    for (const key of ['loss', 'val_loss', 'acc', 'val_acc']) this.series[key].push(logs[key] ?? null);
    this.update();
  }

  /** Empty both charts (a new training run). */
  reset() {
    for (const values of Object.values(this.series)) values.length = 0;
    this.update();
  }

  update() {
    if (this.loss) this.loss.update('none');
    if (this.acc) this.acc.update('none');
  }
}
