"""`add_metadata` in Python: stamps every checkpoint's metadata with where and when it
was migrated — `migrated_at` (the run's start, RFC 3339 UTC), `migration_run_id`,
`migration_source` — plus the static `fields` of its config. An existing key is kept
unless the config says `overwrite: true`. Same behaviour as the Rust reference plugin.

config: `{ "fields": { "team": "support" }, "overwrite": false }`
"""

from ckpt_migrate_plugin import METADATA, Transformer, export_transformer, patch


class AddMetadata(Transformer):
    name, version, needs = "add_metadata", "0.1.0", METADATA

    def __init__(self, config):
        fields = config.get("fields")
        if fields is not None and not isinstance(fields, dict):
            raise ValueError("`fields` must be a map of key: value")
        overwrite = config.get("overwrite")
        if overwrite is not None and not isinstance(overwrite, bool):
            raise ValueError("`overwrite` must be true or false")
        self.fields = fields or {}
        self.overwrite = bool(overwrite)

    def transform(self, ctx, record):
        metadata = dict(record.metadata or {})
        stamps = {
            "migrated_at": ctx.run_started_at,
            "migration_run_id": ctx.run_id,
            "migration_source": ctx.source_kind,
        }
        for key, value in [*stamps.items(), *self.fields.items()]:
            if self.overwrite or key not in metadata:
                metadata[key] = value
        return patch(metadata=metadata)


Transformer = export_transformer(AddMetadata)
