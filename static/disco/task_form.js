/**
 * Progressive enhancement of the task form (templates/tasks/task_form.html).
 *
 * Without JavaScript every field is shown and the server ignores the ones that do not
 * apply. With it, only the fields of the chosen data type, scheme, aggregator, server
 * optimizer and privacy choice are shown, and an upload over the size limit is refused before it is sent.
 * Which parameters each aggregator and server optimizer takes is read from the registry the page
 * embeds (`aggregation-registry`, from aggregation/aggregators/registry.py), never written here.
 */

/**
 * Show the elements whose space-separated `attribute` list contains `value`; hide the rest.
 * @param {ParentNode} root
 * @param {string} attribute e.g. "data-show-for-type"
 * @param {string} value the current choice
 */
function showMatching(root, attribute, value) {
  for (const el of root.querySelectorAll(`[${attribute}]`)) {
    const wanted = el.getAttribute(attribute).split(/\s+/);
    el.hidden = !wanted.includes(value);
  }
}

/**
 * The form fields of the chosen entries' parameters, from the embedded registry.
 * @param {{aggregators: Array<{name: string, params: Array<{field: string}>}>,
 *          serverOptimizers: Array<{name: string, params: Array<{field: string}>}>}} registry
 * @param {Record<string, string>} chosen e.g. {aggregators: "krum", serverOptimizers: "none"}
 * @returns {Set<string>}
 */
export function paramFieldsFor(registry, chosen) {
  const fields = new Set();
  for (const [family, name] of Object.entries(chosen)) {
    const entry = (registry[family] || []).find((e) => e.name === name);
    for (const param of entry ? entry.params : []) fields.add(param.field);
  }
  return fields;
}

/**
 * The aggregators a task of `scheme` can run (the registry's `schemes`): decentralized peers run only the
 * sample-weighted mean and secure aggregation, so the form offers only those there.
 * @param {{aggregators: Array<{name: string, schemes?: string[]}>}} registry
 * @param {string} scheme
 * @returns {Set<string>}
 */
export function aggregatorsFor(registry, scheme) {
  return new Set(registry.aggregators.filter((a) => !a.schemes || a.schemes.includes(scheme)).map((a) => a.name));
}

/**
 * @param {HTMLFormElement} form
 */
function enhance(form) {
  form.classList.add("js-enhanced");
  const dataType = /** @type {HTMLSelectElement} */ (form.elements.namedItem("data_type"));
  const aggregator = /** @type {HTMLSelectElement} */ (form.elements.namedItem("aggregator"));
  const scheme = /** @type {HTMLSelectElement} */ (form.elements.namedItem("scheme"));
  const optimizer = /** @type {HTMLSelectElement} */ (form.elements.namedItem("server_optimizer"));
  const embedded = document.getElementById("aggregation-registry");
  const registry = embedded ? JSON.parse(embedded.textContent) : {aggregators: [], serverOptimizers: []};
  const update = () => {
    const usable = aggregatorsFor(registry, scheme.value);
    for (const option of aggregator.options) option.disabled = registry.aggregators.length > 0 && !usable.has(option.value);
    showMatching(form, "data-show-for-type", dataType.value);
    showMatching(form, "data-show-for-scheme", scheme.value);
    showMatching(form, "data-show-for-aggregator", aggregator.value);
    const shown = paramFieldsFor(registry, {aggregators: aggregator.value, serverOptimizers: optimizer.value});
    for (const el of form.querySelectorAll("[data-param-field]")) {
      el.hidden = !shown.has(el.getAttribute("data-param-field"));
    }
    for (const el of form.querySelectorAll("[data-show-if-checked]")) {
      const box = /** @type {HTMLInputElement|null} */ (document.getElementById(el.getAttribute("data-show-if-checked")));
      el.hidden = !(box && box.checked);
    }
  };
  form.addEventListener("change", update);
  update();

  const files = /** @type {HTMLInputElement} */ (form.elements.namedItem("model_files"));
  const sizeError = document.getElementById("model-size-error");
  const limit = Number(form.dataset.maxBytes || 0);
  const tooLarge = () => {
    const total = Array.from(files.files || []).reduce((sum, f) => sum + f.size, 0);
    return limit > 0 && total > limit ? total : 0;
  };
  files.addEventListener("change", () => {
    const total = tooLarge();
    sizeError.hidden = !total;
    sizeError.textContent = total
      ? `These files add up to ${(total / 1e6).toFixed(1)} MB; the limit is ${(limit / 1e6).toFixed(1)} MB. Choose a smaller model.`
      : "";
    files.setAttribute("aria-invalid", total ? "true" : "false");
  });
  form.addEventListener("submit", (event) => {
    if (tooLarge()) {
      event.preventDefault();
      files.focus();
    }
  });
}

const form = typeof document === "undefined" ? null
  : /** @type {HTMLFormElement|null} */ (document.getElementById("task-form"));
if (form) enhance(form);
