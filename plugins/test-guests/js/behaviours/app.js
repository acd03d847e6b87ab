// Test guest: one transformer that answers every outcome, by thread id in its config
// (`drop`, `reject`, `patch`: lists of thread ids; others are kept), logs through the
// host and with console.log, and fails a batch on `raise_on` (a thread id).

import { METADATA, defineTransformer, drop, keep, log, patch, reject } from './ckpt-migrate-plugin.js';

export const transformer = defineTransformer({
  name: 'behaviours-js',
  version: '0.1.0',
  needs: METADATA,
  init(config) {
    log.info(`configured with ${Object.keys(config).sort().join(',')}`);
    return config;
  },
  transform(config, ctx, record) {
    const thread = record.threadId;
    if (thread === config.raise_on) throw new Error(`cannot handle thread ${thread}`);
    if ((config.drop ?? []).includes(thread)) return drop();
    if ((config.reject ?? []).includes(thread)) return reject(`thread ${thread} is not wanted here`);
    if ((config.patch ?? []).includes(thread)) {
      console.log(`patching ${record.checkpointId}`);
      return patch({ metadata: { ...(record.metadata ?? {}), patched_by: 'js' } });
    }
    return keep();
  },
});
