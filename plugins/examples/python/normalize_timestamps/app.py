"""`normalize_timestamps` in Python: rewrites timestamps as RFC 3339 UTC — the
checkpoint's `ts` and metadata fields (by default keys ending in `_at`, and `timestamp`
/ `ts`; or the `fields` listed in the config). Understands epoch seconds, milliseconds
and microseconds (numbers or digit strings) and common date-time strings. Values it
cannot read are left as they are and reported in the log. Same behaviour as the Rust
reference plugin.

config: `{ "fields": ["created_at", "last_seen"] }`
"""

import _strptime  # noqa: F401  datetime.strptime imports it lazily: load it at build time
import datetime as dt
import email.utils
import re

from ckpt_migrate_plugin import METADATA, Transformer, export_transformer, keep, log, patch

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
# RFC 3339: date, `T`/`t`/space, time with optional fraction, `Z` or an offset.
RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)
WITH_OFFSET = ["%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z",
               "%Y-%m-%dT%H:%M:%S.%f%z"]
WITHOUT_OFFSET = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S",
                  "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]


def from_epoch(n: float):
    """The instant an epoch number denotes, the unit chosen by magnitude: < 1e11
    seconds, < 1e14 milliseconds, < 1e17 microseconds."""
    size = abs(n)
    if size < 1e11:
        micros = n * 1e6
    elif size < 1e14:
        micros = n * 1e3
    elif size < 1e17:
        micros = n
    else:
        return None
    try:
        return EPOCH + dt.timedelta(microseconds=round(micros))
    except OverflowError:
        return None


def rfc3339(text: str):
    m = RFC3339.match(text)
    if not m:
        return None
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    if offset in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if offset[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        return dt.datetime(int(year), int(month), int(day), int(hour), int(minute),
                           int(second), micros, tzinfo=tz)
    except ValueError:
        return None


def from_text(text: str):
    text = text.strip()
    if text and all(c.isdigit() or c in ".-" for c in text):
        try:
            return from_epoch(float(text))
        except ValueError:
            pass
    t = rfc3339(text)
    if t is not None:
        return t.astimezone(UTC)
    try:
        t = email.utils.parsedate_to_datetime(text)
        if t is not None and t.tzinfo is not None:
            return t.astimezone(UTC)
    except (TypeError, ValueError, IndexError):
        pass
    for fmt in WITH_OFFSET:
        try:
            return dt.datetime.strptime(text, fmt).astimezone(UTC)
        except ValueError:
            pass
    for fmt in WITHOUT_OFFSET:
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


def as_text(t: dt.datetime) -> str:
    """RFC 3339 UTC with `Z`, and as many fraction digits as needed (0, 3 or 6)."""
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond % 1000 == 0 and t.microsecond:
        text += f".{t.microsecond // 1000:03d}"
    elif t.microsecond:
        text += f".{t.microsecond:06d}"
    return text + "Z"


def normalize(value):
    # Already RFC 3339 in UTC (`Z` or `+00:00`): leave the text exactly as it is.
    if isinstance(value, str):
        t = rfc3339(value)
        if t is not None and t.utcoffset() == dt.timedelta(0):
            return value
        instant = from_text(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        instant = from_epoch(float(value))
    else:
        instant = None
    return None if instant is None else as_text(instant)


class NormalizeTimestamps(Transformer):
    name, version, needs = "normalize_timestamps", "0.1.0", METADATA

    def __init__(self, config):
        fields = config.get("fields")
        if fields is not None and not (
            isinstance(fields, list) and all(isinstance(f, str) for f in fields)
        ):
            raise ValueError("`fields` must be a list of key names")
        self.fields = fields

    def is_timestamp_key(self, key: str) -> bool:
        if self.fields is not None:
            return key in self.fields
        return key.endswith("_at") or key in ("timestamp", "ts")

    def transform(self, ctx, record):
        ts = None
        if record.ts is not None:
            n = normalize(record.ts)
            if n is None:
                log.warn(f"{record.checkpoint_id}: ts {record.ts!r} is not a timestamp I can read; left as is")
            elif n != record.ts:
                ts = n
        metadata = dict(record.metadata or {})
        changed = False
        for key in [k for k in metadata if self.is_timestamp_key(k)]:
            value = metadata[key]
            n = normalize(value)
            if n is None:
                log.warn(f"{record.checkpoint_id}: metadata {key} = {value!r} is not a timestamp I can read; left as is")
            elif value != n:
                metadata[key] = n
                changed = True
        if ts is None and not changed:
            return keep()
        return patch(metadata=metadata if changed else None, ts=ts)


Transformer = export_transformer(NormalizeTimestamps)
