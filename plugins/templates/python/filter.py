"""{{name}}: a ckpt-migrate filter in Python.

It keeps the threads whose id starts with the config's `prefix` and drops the others.
Change `filter` to do what you need; see README.md to build and try it.
"""

from ckpt_migrate_plugin import NOTHING, Filter, drop, export_filter, keep


class Plugin(Filter):
    name, version, needs = "{{name}}", "0.1.0", NOTHING

    def __init__(self, config):
        # `config:` from the migration's YAML, as a dict.
        self.prefix = config.get("prefix", "")

    def filter(self, ctx, record):
        # keep(), drop() or reject("why")
        return keep() if record.thread_id.startswith(self.prefix) else drop()


Filter = export_filter(Plugin)
