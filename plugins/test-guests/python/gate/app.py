"""Test guest: a filter that keeps the threads starting with `prefix` (when given) or
listed in `keep`, rejects those in `reject` and drops the rest; `abort: true` makes it trap (os.abort, as a crashed
runtime would), `spin: true` loops forever, `hog: true` allocates without end."""

import os

from ckpt_migrate_plugin import Filter, NOTHING, drop, export_filter, keep, reject


class Gate(Filter):
    name, version, needs = "gate-python", "0.1.0", NOTHING

    def __init__(self, config):
        self.config = config

    def filter(self, ctx, record):
        if self.config.get("abort"):
            os.abort()
        if self.config.get("spin"):
            while True:
                pass
        if self.config.get("hog"):
            hog = []
            while True:
                hog.append(bytearray(1 << 20))
        if "prefix" in self.config:
            return keep() if record.thread_id.startswith(self.config["prefix"]) else drop()
        if record.thread_id in self.config.get("keep", []):
            return keep()
        if record.thread_id in self.config.get("reject", []):
            return reject(f"thread {record.thread_id} is rejected")
        return drop()


Filter = export_filter(Gate)
