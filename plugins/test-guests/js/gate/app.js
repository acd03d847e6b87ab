// Test guest: a filter that keeps the threads starting with `prefix` (when given) or
// listed in `keep`, rejects those in `reject` and drops the rest; `spin: true` loops forever, `hog: true` allocates
// without end.

import { defineFilter, drop, keep, reject } from './ckpt-migrate-plugin.js';

export const filter = defineFilter({
  name: 'gate-js',
  version: '0.1.0',
  needs: {},
  init: (config) => config,
  filter(config, ctx, record) {
    if (config.spin) for (;;);
    if (config.hog) {
      const hog = [];
      for (;;) hog.push(new Uint8Array(1 << 20).fill(1));
    }
    if (config.prefix !== undefined) return record.threadId.startsWith(config.prefix) ? keep() : drop();
    if ((config.keep ?? []).includes(record.threadId)) return keep();
    if ((config.reject ?? []).includes(record.threadId)) return reject(`thread ${record.threadId} is rejected`);
    return drop();
  },
});
