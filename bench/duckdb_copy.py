#!/usr/bin/env python3
"""DuckDB's raw copy of a SqliteSaver database to Parquet (zstd): `checkpoints` and
`writes` as they are, no decoding. The floor bench/run.sh compares against.

    python duckdb_copy.py SQLITE_PATH OUT_DIR

Needs the PyPI packages `duckdb` and `duckdb-extension-sqlite` (the sqlite scanner,
loaded from the package, no download at run time).
"""

import glob
import os
import shutil
import sys
import tempfile

import duckdb
import duckdb_extension_sqlite


def main() -> None:
    db, out = sys.argv[1], sys.argv[2]
    packaged = glob.glob(
        os.path.join(os.path.dirname(duckdb_extension_sqlite.__file__), "extensions", "*", "sqlite.duckdb_extension")
    )[0]
    # DuckDB looks for the entry point named after the file: the scanner's own name.
    # The copy goes in a directory removed at the end (34 MB left behind a run before).
    with tempfile.TemporaryDirectory() as scratch:
        ext = os.path.join(scratch, "sqlite_scanner.duckdb_extension")
        shutil.copy(packaged, ext)
        con = duckdb.connect()
        con.execute(f"LOAD '{ext}'")
        for table in ("checkpoints", "writes"):
            con.execute(
                f"COPY (SELECT * FROM sqlite_scan('{db}', '{table}')) "
                f"TO '{out}/{table}.parquet' (FORMAT parquet, COMPRESSION zstd)"
            )
        n = con.execute(f"SELECT count(*) FROM '{out}/checkpoints.parquet'").fetchone()[0]
        con.close()
    print(f"copied {n}", file=sys.stderr)


if __name__ == "__main__":
    main()
