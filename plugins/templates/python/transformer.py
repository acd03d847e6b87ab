"""{{name}}: a ckpt-migrate transformer in Python.

It stamps each checkpoint's metadata with `{"team": <config team>}`. Change
`transform` to do what you need; see README.md to build and try it.
"""

from ckpt_migrate_plugin import METADATA, Transformer, export_transformer, keep, log, patch


class Plugin(Transformer):
    name, version, needs = "{{name}}", "0.1.0", METADATA

    def __init__(self, config):
        # `config:` from the migration's YAML, as a dict.
        self.team = config.get("team", "unknown")
        log.info(f"tagging with team {self.team!r}")

    def transform(self, ctx, record):
        # keep(), drop(), reject("why"), or patch(metadata=..., ts=...)
        if record.metadata is None:
            return keep()
        return patch(metadata={**record.metadata, "team": self.team})


Transformer = export_transformer(Plugin)
