/* ESLint for the portal's script (src/zoomcal/web/static/portal.js), run from the repository's root with
   `tests/web/node_modules/.bin/eslint --config tests/web/eslint.config.cjs src/zoomcal/web/static/portal.js`.
   Syntax: ES2017 as a classic script, a little short of what Safari 12 parses (it has ES2018's object spread, not
   ES2020's `?.`, `??` or BigInt literals), so that anything later fails to parse.
   APIs: eslint-plugin-compat against the browserslist in package.json. */
"use strict";

const js = require("@eslint/js");
const compat = require("eslint-plugin-compat");
const globals = require("globals");
const { browserslist } = require("./package.json");

module.exports = [
  {
    files: ["**/*.js"],
    languageOptions: {
      ecmaVersion: 2017,
      sourceType: "script",
      globals: { ...globals.browser },
    },
    plugins: { compat },
    settings: { browsers: browserslist, polyfills: [] },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      ...js.configs.recommended.rules,
      "compat/compat": "error",
      strict: ["error", "function"],
    },
  },
];
