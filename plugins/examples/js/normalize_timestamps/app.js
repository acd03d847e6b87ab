// `normalize_timestamps` in JavaScript: rewrites timestamps as RFC 3339 UTC — the
// checkpoint's `ts` and metadata fields (by default keys ending in `_at`, and
// `timestamp` / `ts`; or the `fields` listed in the config). Understands epoch seconds,
// milliseconds and microseconds (numbers or digit strings) and common date-time
// strings. Values it cannot read are left as they are and reported in the log. Same
// behaviour as the Rust reference plugin.
//
// config: `{ "fields": ["created_at", "last_seen"] }`
//
// Instants are kept as integer microseconds since the epoch (a JS Date holds only
// milliseconds).

import { METADATA, defineTransformer, keep, log, patch } from './ckpt-migrate-plugin.js';

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;
// `2025-06-01 12:00:02.5+02:00`, `…+0200`, `…T…+0200`; without an offset: taken as UTC.
const WITH_OFFSET = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([+-]\d{2}:?\d{2})$/;
const WITHOUT_OFFSET = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$/;
const RFC2822 = /^(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{2}):(\d{2})(?::(\d{2}))?\s+([+-]\d{4}|GMT|UT|UTC|Z)$/;

/** Microseconds since the epoch of a UTC date-time, or undefined when it is not one. */
function micros(y, mo, d, h = 0, mi = 0, s = 0, fraction = '', offsetMinutes = 0) {
  [y, mo, d, h, mi, s] = [y, mo, d, h, mi, s].map(Number);
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60) return undefined;
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  const check = new Date(ms);
  if (check.getUTCDate() !== d || check.getUTCMonth() !== mo - 1) return undefined;
  const sub = Number((fraction || '').slice(0, 6).padEnd(6, '0'));
  return ms * 1000 + sub - offsetMinutes * 60_000_000;
}

function offsetMinutes(text) {
  if (/^(Z|z|GMT|UT|UTC)$/.test(text)) return 0;
  const digits = text.replace(':', '');
  const sign = digits[0] === '-' ? -1 : 1;
  return sign * (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5)));
}

/** The instant an epoch number denotes, the unit chosen by magnitude: < 1e11 seconds,
 *  < 1e14 milliseconds, < 1e17 microseconds. */
function fromEpoch(n) {
  const size = Math.abs(n);
  const us = size < 1e11 ? n * 1e6 : size < 1e14 ? n * 1e3 : size < 1e17 ? n : undefined;
  // chrono rounds half away from zero; Math.round rounds half up.
  return us === undefined ? undefined : Math.sign(us) * Math.round(Math.abs(us));
}

function rfc3339(text) {
  const m = RFC3339.exec(text);
  return m && { us: micros(m[1], m[2], m[3], m[4], m[5], m[6], m[7], offsetMinutes(m[8])), utc: offsetMinutes(m[8]) === 0 };
}

function fromText(text) {
  text = text.trim();
  if (text && /^[0-9.-]+$/.test(text) && !Number.isNaN(Number(text))) return fromEpoch(Number(text));
  let m = rfc3339(text);
  if (m && m.us !== undefined) return m.us;
  m = RFC2822.exec(text);
  if (m) {
    const month = MONTHS.indexOf(m[2].toLowerCase()) + 1;
    if (month > 0) return micros(m[3], month, m[1], m[4], m[5], m[6] ?? 0, '', offsetMinutes(m[7]));
  }
  m = WITH_OFFSET.exec(text);
  if (m) return micros(m[1], m[2], m[3], m[4], m[5], m[6], m[7], offsetMinutes(m[8]));
  m = WITHOUT_OFFSET.exec(text);
  if (m) return micros(m[1], m[2], m[3], m[4] ?? 0, m[5] ?? 0, m[6] ?? 0, m[7]);
  return undefined;
}

/** RFC 3339 UTC with `Z`, and as many fraction digits as needed (0, 3 or 6). */
function asText(us) {
  const seconds = Math.floor(us / 1e6);
  const fraction = us - seconds * 1e6;
  const base = new Date(seconds * 1000).toISOString().slice(0, 19);
  if (fraction === 0) return `${base}Z`;
  if (fraction % 1000 === 0) return `${base}.${String(fraction / 1000).padStart(3, '0')}Z`;
  return `${base}.${String(fraction).padStart(6, '0')}Z`;
}

function normalize(value) {
  if (typeof value === 'string') {
    // Already RFC 3339 in UTC (`Z` or `+00:00`): leave the text exactly as it is.
    const t = rfc3339(value);
    if (t && t.us !== undefined && t.utc) return value;
    const us = fromText(value);
    return us === undefined ? undefined : asText(us);
  }
  if (typeof value === 'number') {
    const us = fromEpoch(value);
    return us === undefined ? undefined : asText(us);
  }
  return undefined;
}

export const transformer = defineTransformer({
  name: 'normalize_timestamps',
  version: '0.1.0',
  needs: METADATA,
  init(config) {
    const { fields } = config;
    if (fields !== undefined && fields !== null && !(Array.isArray(fields) && fields.every((f) => typeof f === 'string'))) {
      throw new Error('`fields` must be a list of key names');
    }
    return { fields: fields ?? undefined };
  },
  transform({ fields }, ctx, record) {
    const isTimestampKey = (key) => (fields ? fields.includes(key) : key.endsWith('_at') || key === 'timestamp' || key === 'ts');
    let ts;
    if (record.ts !== undefined) {
      const n = normalize(record.ts);
      if (n === undefined) log.warn(`${record.checkpointId}: ts ${JSON.stringify(record.ts)} is not a timestamp I can read; left as is`);
      else if (n !== record.ts) ts = n;
    }
    const metadata = { ...(record.metadata ?? {}) };
    let changed = false;
    for (const key of Object.keys(metadata).filter(isTimestampKey)) {
      const value = metadata[key];
      const n = normalize(value);
      if (n === undefined) {
        log.warn(`${record.checkpointId}: metadata ${key} = ${JSON.stringify(value)} is not a timestamp I can read; left as is`);
      } else if (value !== n) {
        metadata[key] = n;
        changed = true;
      }
    }
    if (ts === undefined && !changed) return keep();
    return patch({ metadata: changed ? metadata : undefined, ts });
  },
});
