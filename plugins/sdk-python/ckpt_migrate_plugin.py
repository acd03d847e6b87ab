"""The ckpt-migrate plugin SDK for Python guests (componentize-py, WIT
`ckpt-migrate:plugin@0.1.0`).

Write a class with `transform(ctx, record)` (or `filter(ctx, record)`), export it, and
build with componentize-py (see docs/plugins.md, or run `ckpt-migrate plugin new NAME
--lang python`):

    from ckpt_migrate_plugin import METADATA, Transformer, export_transformer, keep, patch

    class Tag(Transformer):
        name, version, needs = "tag", "0.1.0", METADATA

        def __init__(self, config):
            self.team = config.get("team", "unknown")

        def transform(self, ctx, record):
            return patch(metadata={**record.metadata, "team": self.team})

    Transformer = export_transformer(Tag)   # the name componentize-py looks for

Records come with the parts `needs` asks for, parsed: `record.metadata` (a dict),
`record.checkpoint` (a dict), `record.pending_writes` (a list of `Write`). An exception
in `transform` fails the batch (its records go to the dead-letter file) with the
exception's text, and its traceback goes to the migration's log.

componentize-py makes a new instance of the exported class for every call, so the SDK
keeps the plugin object at module level: state set in `__init__` lasts for the run.
Everything the plugin imports must be imported at module level (the build snapshots
the interpreter; there is no file system to import from at run time).
"""

import json
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Optional

from componentize_py_types import Err
from wit_world.imports import host as _host
from wit_world.imports import types as _wit

__all__ = [
    "METADATA", "CHECKPOINT", "PENDING_WRITES", "NOTHING",
    "Context", "Record", "Write", "Transformer", "Filter",
    "keep", "drop", "reject", "patch", "log",
    "export_transformer", "export_filter",
]

# What a plugin reads: combine with `|` (`METADATA | CHECKPOINT`).
METADATA = _wit.Needs.METADATA
CHECKPOINT = _wit.Needs.CHECKPOINT
PENDING_WRITES = _wit.Needs.PENDING_WRITES
NOTHING = _wit.Needs(0)


@dataclass
class Context:
    """The run a batch belongs to. `run_started_at` (RFC 3339 UTC) is the plugin's clock."""
    run_id: str
    run_started_at: str
    source_kind: str
    destination_kind: str
    batch_index: int


@dataclass
class Write:
    """One pending write, its value parsed."""
    task_id: str
    channel: str
    value: Any


@dataclass
class Record:
    """One checkpoint, with the parts the plugin asked for (`None` otherwise)."""
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: Optional[str]
    ts: Optional[str]
    metadata: Optional[dict]
    checkpoint: Optional[dict]
    pending_writes: Optional[list]


class Transformer:
    """Base of a transformer: set `name`, `version`, `needs`; take the YAML `config`
    (a dict) in `__init__`; answer `keep()`, `drop()`, `reject(reason)` or
    `patch(metadata=…, ts=…)` from `transform`."""
    name = "python-plugin"
    version = "0.1.0"
    needs = METADATA

    def __init__(self, config: dict):
        self.config = config

    def transform(self, ctx: Context, record: Record):
        return keep()


class Filter(Transformer):
    """Base of a filter: answer `keep()`, `drop()` or `reject(reason)` from `filter`."""

    def filter(self, ctx: Context, record: Record):
        return keep()


def keep():
    """Leave the record as it is."""
    return _wit.TransformOutcome_Keep()


def drop():
    """Leave the record out of the destination (counted as filtered)."""
    return _wit.TransformOutcome_Drop()


def reject(reason: str):
    """Send the record to the dead-letter file with `reason`."""
    return _wit.TransformOutcome_Reject(str(reason))


def patch(metadata: Optional[dict] = None, ts: Optional[str] = None):
    """Replace the metadata (a whole new dict) and/or `ts`; `None` keeps each."""
    metadata_json = None
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError("patch(metadata=…) takes a dict")
        # Plain JSON only (NaN and Infinity are not JSON).
        metadata_json = json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return _wit.TransformOutcome_Patch(_wit.Patch(ts, metadata_json))


class log:
    """Lines in the migration's log, prefixed with the plugin's name. `print` works
    too (stdout and stderr reach the log after each batch)."""

    @staticmethod
    def debug(message: str) -> None:
        _host.log(_host.Level.DEBUG, str(message))

    @staticmethod
    def info(message: str) -> None:
        _host.log(_host.Level.INFO, str(message))

    @staticmethod
    def warn(message: str) -> None:
        _host.log(_host.Level.WARN, str(message))

    @staticmethod
    def error(message: str) -> None:
        _host.log(_host.Level.ERROR, str(message))


def _parsed(text: Optional[str], what: str):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{what} from the host is not JSON: {e}") from None


def _record(r) -> Record:
    writes = None
    if r.pending_writes is not None:
        writes = [Write(w.task_id, w.channel, _parsed(w.value_json, "a pending write"))
                  for w in r.pending_writes]
    return Record(
        thread_id=r.thread_id,
        checkpoint_ns=r.checkpoint_ns,
        checkpoint_id=r.checkpoint_id,
        parent_checkpoint_id=r.parent_checkpoint_id,
        ts=r.ts,
        metadata=_parsed(r.metadata_json, "metadata"),
        checkpoint=_parsed(r.checkpoint_json, "checkpoint"),
        pending_writes=writes,
    )


def _context(c) -> Context:
    return Context(c.run_id, c.run_started_at, c.source_kind, c.destination_kind, c.batch_index)


def _failure(e: BaseException) -> Err:
    """The batch's error: the exception's last line; the traceback goes to the log."""
    traceback.print_exc(file=sys.stderr)
    return Err(f"{type(e).__name__}: {e}")


_FILTER_OUTCOMES = {
    _wit.TransformOutcome_Keep: lambda o: _wit.FilterOutcome_Keep(),
    _wit.TransformOutcome_Drop: lambda o: _wit.FilterOutcome_Drop(),
    _wit.TransformOutcome_Reject: lambda o: _wit.FilterOutcome_Reject(o.value),
}


def _export(plugin_class, method: str, as_outcome):
    """The class componentize-py calls: `init` makes the one plugin object (kept at
    module level), the batch method maps it over the records."""
    state = {}

    class Export:
        def init(self, config_json: str):
            try:
                config = json.loads(config_json) if config_json else {}
                state["plugin"] = plugin_class(config if config is not None else {})
            except Exception as e:
                raise _failure(e)
            return _wit.PluginInfo(str(plugin_class.name), str(plugin_class.version),
                                   plugin_class.needs)

        def run(self, ctx, records):
            plugin = state.get("plugin")
            if plugin is None:
                raise Err("the plugin was called before init")
            try:
                context = _context(ctx)
                call = getattr(plugin, method)
                return [as_outcome(call(context, _record(r))) for r in records]
            except Err:
                raise
            except Exception as e:
                raise _failure(e)

    setattr(Export, method, Export.run)
    return Export


def _checked(outcome):
    if outcome is None:
        return keep()
    if not isinstance(outcome, (_wit.TransformOutcome_Keep, _wit.TransformOutcome_Drop,
                                _wit.TransformOutcome_Patch, _wit.TransformOutcome_Reject)):
        raise TypeError(f"transform returned {outcome!r}; use keep(), drop(), reject(…) or patch(…)")
    return outcome


def _as_filter_outcome(outcome):
    outcome = _checked(outcome)
    make = _FILTER_OUTCOMES.get(type(outcome))
    if make is None:
        raise TypeError("a filter answers keep(), drop() or reject(…), not patch(…)")
    return make(outcome)


def export_transformer(plugin_class):
    """The class to bind to the name `Transformer` in the app module."""
    return _export(plugin_class, "transform", _checked)


def export_filter(plugin_class):
    """The class to bind to the name `Filter` in the app module."""
    return _export(plugin_class, "filter", _as_filter_outcome)
