// {{name}}: a ckpt-migrate transformer in JavaScript.
//
// It stamps each checkpoint's metadata with `{"team": <config team>}`. Change
// `transform` to do what you need; see README.md to build and try it.

import { METADATA, defineTransformer, keep, log, patch } from './ckpt-migrate-plugin.js';

export const transformer = defineTransformer({
  name: '{{name}}',
  version: '0.1.0',
  needs: METADATA,
  // `config:` from the migration's YAML; what this returns is the plugin's state.
  init(config) {
    const team = config.team ?? 'unknown';
    log.info(`tagging with team ${team}`);
    return { team };
  },
  // keep(), drop(), reject('why'), or patch({ metadata, ts })
  transform(state, ctx, record) {
    if (record.metadata === undefined) return keep();
    return patch({ metadata: { ...record.metadata, team: state.team } });
  },
});
