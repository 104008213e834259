/**
 * Live status of a task's model conversion on the task page (owners and administrators).
 *
 * Polls the job status endpoint (`data-jobs-url`, JSON list newest first) every second
 * while the newest job is queued or running, shows "Queued…", "Converting…",
 * "Done: version N" or "Failed: <reason>", and when a job finishes reloads the blocks
 * marked `data-reload-on-job` from the page so the new model appears without a reload.
 */

/** @typedef {{id: number, status: string, message: string, created: string, finished: string|null, version: number|null}} Job */

/**
 * The words shown for a job.
 * @param {Job} job
 * @returns {string}
 */
export function describeJob(job) {
  switch (job.status) {
    case "queued": return "Queued…";
    case "running": return "Converting…";
    case "done": return `Done: version ${job.version}`;
    case "failed": return `Failed: ${job.message || "the conversion stopped without a reason."}`;
    default: return job.status;
  }
}

/** @param {string} status */
const isActive = (status) => status === "queued" || status === "running";

/**
 * Replace every `[data-reload-on-job]` block with its fresh copy from the server.
 */
async function reloadBlocks() {
  const response = await fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const block of document.querySelectorAll("[data-reload-on-job]")) {
    const replacement = fresh.getElementById(block.id);
    if (replacement) block.replaceWith(document.importNode(replacement, true));
  }
}

/**
 * @param {HTMLElement} box the status element, with `data-jobs-url`
 */
async function follow(box) {
  const text = box.querySelector("[data-job-text]") || box;
  const spinner = box.querySelector(".spinner");
  let wasActive = box.dataset.jobStatus ? isActive(box.dataset.jobStatus) : false;
  for (;;) {
    let jobs;
    try {
      const response = await fetch(box.dataset.jobsUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      jobs = /** @type {Job[]} */ (await response.json());
    } catch (error) {
      await new Promise((resolve) => setTimeout(resolve, 3000));
      continue;
    }
    const job = jobs[0];
    if (!job) return;
    text.textContent = describeJob(job);
    box.dataset.jobStatus = job.status;
    if (spinner) spinner.hidden = !isActive(job.status);
    if (!isActive(job.status)) {
      if (wasActive) await reloadBlocks();
      return;
    }
    wasActive = true;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

for (const box of document.querySelectorAll("[data-jobs-url]")) {
  if (isActive(/** @type {HTMLElement} */ (box).dataset.jobStatus || "")) follow(/** @type {HTMLElement} */ (box));
}
