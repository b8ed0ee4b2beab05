/* Stylelint for the portal's stylesheet (src/zoomcal/web/static/portal.css), run from the repository's root with
   `tests/web/node_modules/.bin/stylelint --config tests/web/stylelint.config.cjs src/zoomcal/web/static/portal.css`:
   every property, value and selector must work in the browserslist in package.json. */
"use strict";

const { browserslist } = require("./package.json");

module.exports = {
  plugins: [require.resolve("stylelint-no-unsupported-browser-features")],
  rules: {
    "plugin/no-unsupported-browser-features": [true, { browsers: browserslist, severity: "error" }],
  },
};
