/*
 * Load before vendor/tfjs/tf.min.js (a classic script, not a module).
 *
 * tf.min.js bundles regenerator-runtime, which sets the global `regeneratorRuntime`. The bundle is
 * strict code, so assigning an undeclared global throws, and its fallback is
 * `Function("r", "regeneratorRuntime = r")(...)`: an eval, which the site's Content-Security-Policy
 * refuses (no 'unsafe-eval'), and TF.js then fails to load. With the global declared first, the plain
 * assignment succeeds and no eval is attempted.
 */
if (!('regeneratorRuntime' in globalThis)) globalThis.regeneratorRuntime = undefined;
