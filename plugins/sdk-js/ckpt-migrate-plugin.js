// The ckpt-migrate plugin SDK for JavaScript guests (ComponentizeJS, WIT
// `ckpt-migrate:plugin@0.1.0`).
//
//   import { METADATA, defineTransformer, patch } from './ckpt-migrate-plugin.js';
//
//   export const transformer = defineTransformer({
//     name: 'tag', version: '0.1.0', needs: METADATA,
//     init(config) { return { team: config.team ?? 'unknown' }; },   // the plugin's state
//     transform(state, ctx, record) {
//       return patch({ metadata: { ...record.metadata, team: state.team } });
//     },
//   });
//
// Records come with the parts `needs` asks for, parsed: `record.metadata` (an object),
// `record.checkpoint`, `record.pendingWrites` ([{taskId, channel, value}]). An exception
// in `transform` fails the batch (its records go to the dead-letter file) with the
// exception's message; its stack goes to the migration's log. JSON numbers are JS
// numbers here: integers beyond 2^53 lose precision (use a Rust or Python plugin for
// metadata that holds such numbers).

import { log as hostLog } from 'ckpt-migrate:plugin/host@0.1.0';

/** What a plugin reads; combine with `{ ...METADATA, ...CHECKPOINT }`. */
export const METADATA = Object.freeze({ metadata: true });
export const CHECKPOINT = Object.freeze({ checkpoint: true });
export const PENDING_WRITES = Object.freeze({ pendingWrites: true });

/** Leave the record as it is. */
export const keep = () => ({ tag: 'keep' });
/** Leave the record out of the destination (counted as filtered). */
export const drop = () => ({ tag: 'drop' });
/** Send the record to the dead-letter file with `reason`. */
export const reject = (reason) => ({ tag: 'reject', val: String(reason) });
/** Replace the metadata (a whole new object) and/or `ts`; `undefined` keeps each. */
export function patch({ metadata, ts } = {}) {
  if (metadata !== undefined && (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata))) {
    throw new TypeError('patch({ metadata }) takes an object');
  }
  return {
    tag: 'patch',
    val: {
      ts: ts === undefined ? undefined : String(ts),
      metadataJson: metadata === undefined ? undefined : JSON.stringify(metadata),
    },
  };
}

/** Lines in the migration's log, prefixed with the plugin's name (`console.log` works too). */
export const log = Object.freeze({
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
});

function parsed(text, what) {
  if (text === undefined || text === null) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} from the host is not JSON: ${e.message}`);
  }
}

function record(r) {
  return {
    threadId: r.threadId,
    checkpointNs: r.checkpointNs,
    checkpointId: r.checkpointId,
    parentCheckpointId: r.parentCheckpointId,
    ts: r.ts,
    metadata: parsed(r.metadataJson, 'metadata'),
    checkpoint: parsed(r.checkpointJson, 'checkpoint'),
    pendingWrites: r.pendingWrites?.map((w) => ({
      taskId: w.taskId,
      channel: w.channel,
      value: parsed(w.valueJson, 'a pending write'),
    })),
  };
}

/** The batch's error: `Name: message`; the stack goes to the log (stderr). */
function failure(e) {
  console.error(e?.stack ?? String(e));
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

const OUTCOMES = new Set(['keep', 'drop', 'patch', 'reject']);

function checked(outcome) {
  if (outcome === undefined) return keep();
  if (!outcome || !OUTCOMES.has(outcome.tag)) {
    throw new TypeError(`transform returned ${JSON.stringify(outcome)}; use keep(), drop(), reject(…) or patch(…)`);
  }
  return outcome;
}

function asFilterOutcome(outcome) {
  outcome = checked(outcome);
  if (outcome.tag === 'patch') throw new TypeError('a filter answers keep(), drop() or reject(…), not patch(…)');
  return outcome;
}

function define(spec, method, asOutcome) {
  const needs = { metadata: false, checkpoint: false, pendingWrites: false, ...(spec.needs ?? METADATA) };
  let state;
  let ready = false;
  return {
    init(configJson) {
      try {
        const config = configJson ? JSON.parse(configJson) : {};
        state = spec.init ? spec.init(config ?? {}) : config;
        ready = true;
      } catch (e) {
        throw failure(e);
      }
      return { name: String(spec.name), version: String(spec.version ?? '0.1.0'), needs };
    },
    [method](ctx, records) {
      if (!ready) throw 'the plugin was called before init';
      try {
        return records.map((r) => asOutcome(spec[method](state, ctx, record(r))));
      } catch (e) {
        throw failure(e);
      }
    },
  };
}

/** The `transformer` export: `{ name, version, needs, init(config) → state, transform(state, ctx, record) }`. */
export const defineTransformer = (spec) => define(spec, 'transform', checked);

/** The `filter` export: `{ name, version, needs, init(config) → state, filter(state, ctx, record) }`. */
export const defineFilter = (spec) => define(spec, 'filter', asFilterOutcome);
