"""Test guest: one transformer that answers every outcome, by thread id in its config
(`drop`, `reject`, `patch`: lists of thread ids; others are kept), logs through the
host and with `print`, and fails a batch on `raise_on` (a thread id)."""

from ckpt_migrate_plugin import METADATA, Transformer, drop, export_transformer, keep, log, patch, reject


class Behaviours(Transformer):
    name, version, needs = "behaviours-python", "0.1.0", METADATA

    def __init__(self, config):
        self.config = config
        log.info(f"configured with {sorted(config)}")

    def transform(self, ctx, record):
        thread = record.thread_id
        if thread == self.config.get("raise_on"):
            raise ValueError(f"cannot handle thread {thread}")
        if thread in self.config.get("drop", []):
            return drop()
        if thread in self.config.get("reject", []):
            return reject(f"thread {thread} is not wanted here")
        if thread in self.config.get("patch", []):
            print(f"patching {record.checkpoint_id}")
            return patch(metadata={**(record.metadata or {}), "patched_by": "python"})
        return keep()


Transformer = export_transformer(Behaviours)
