// `add_metadata` in JavaScript: stamps every checkpoint's metadata with where and when it
// was migrated — `migrated_at` (the run's start, RFC 3339 UTC), `migration_run_id`,
// `migration_source` — plus the static `fields` of its config. An existing key is kept
// unless the config says `overwrite: true`. Same behaviour as the Rust reference plugin.
//
// config: `{ "fields": { "team": "support" }, "overwrite": false }`

import { METADATA, defineTransformer, patch } from './ckpt-migrate-plugin.js';

export const transformer = defineTransformer({
  name: 'add_metadata',
  version: '0.1.0',
  needs: METADATA,
  init(config) {
    const { fields = {}, overwrite = false } = config;
    if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) {
      throw new Error('`fields` must be a map of key: value');
    }
    if (typeof overwrite !== 'boolean') throw new Error('`overwrite` must be true or false');
    return { fields, overwrite };
  },
  transform({ fields, overwrite }, ctx, record) {
    const metadata = { ...(record.metadata ?? {}) };
    const stamps = {
      migrated_at: ctx.runStartedAt,
      migration_run_id: ctx.runId,
      migration_source: ctx.sourceKind,
    };
    for (const [key, value] of [...Object.entries(stamps), ...Object.entries(fields)]) {
      if (overwrite || !(key in metadata)) metadata[key] = value;
    }
    return patch({ metadata });
  },
});
