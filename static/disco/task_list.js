/**
 * The task list's filters apply as soon as a select changes; the Filter button stays for
 * keyboards and browsers without JavaScript. (A module, not an inline script: the
 * Content-Security-Policy allows scripts from the site's own files only.)
 */
for (const select of document.querySelectorAll('#task-filters select')) {
  select.addEventListener('change', () => select.form.submit());
}
