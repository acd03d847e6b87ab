// {{name}}: a ckpt-migrate filter in JavaScript.
//
// It keeps the threads whose id starts with the config's `prefix` and drops the others.
// Change `filter` to do what you need; see README.md to build and try it.

import { defineFilter, drop, keep } from './ckpt-migrate-plugin.js';

export const filter = defineFilter({
  name: '{{name}}',
  version: '0.1.0',
  needs: {},
  // `config:` from the migration's YAML; what this returns is the plugin's state.
  init: (config) => ({ prefix: config.prefix ?? '' }),
  // keep(), drop() or reject('why')
  filter: (state, ctx, record) => (record.threadId.startsWith(state.prefix) ? keep() : drop()),
});
