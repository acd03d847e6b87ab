#!/usr/bin/env python3
"""Checks the host's module dependencies (docs/architecture.md, "Dependencies").

Reads every `crate::…` path in host/src (comments and `#[cfg(test)]` modules left
out) and fails when:
  - the modules import each other in a circle, or
  - a store folder (host/src/stores/<name>/) imports another store folder, the
    config, or the engine: a store is reached only through the traits.

Prints the graph it checked. Run: python3 scripts/check-imports.py
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "host" / "src"
STORES = SRC / "stores"


def node_of(path: Path) -> str:
    """Top-level modules are nodes; under stores/, each folder and each shared file
    (`stores/layout`, `stores/registry`…; `stores` is stores/mod.rs) is one."""
    parts = path.relative_to(SRC).parts
    if parts[0] == "stores" and len(parts) > 1:
        name = parts[1][:-3] if parts[1].endswith(".rs") else parts[1]
        return "stores" if name == "mod" else f"stores/{name}"
    name = parts[0]
    return name[:-3] if name.endswith(".rs") else name


def code_of(text: str) -> str:
    """The text without comments and without `#[cfg(test)]` modules."""
    cut = re.search(r"^#\[cfg\(test\)\]\s*(#\[[^\]]*\][^\n]*\n\s*)*mod \w+ \{", text, re.M)
    if cut:
        text = text[: cut.start()]
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def target_of(path: str, children: set[str]) -> str:
    parts = path.split("::")
    if parts[0] == "stores" and len(parts) > 1 and parts[1] in children:
        return f"stores/{parts[1]}"
    return parts[0]


def main() -> int:
    children = {p.stem for p in STORES.iterdir() if p.is_dir() or p.suffix == ".rs"} - {"mod"}
    folders = {p.name for p in STORES.iterdir() if p.is_dir()}
    edges: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.rs")):
        if path.name == "main.rs" and path.parent == SRC:
            continue  # the binary's edge may use anything
        node = node_of(path)
        deps = edges.setdefault(node, set())
        code = code_of(path.read_text())
        for m in re.finditer(r"\bcrate::((?:[a-z_0-9]+::)*[a-z_0-9]+)", code):
            target = target_of(m.group(1), children)
            if target != node:
                deps.add(target)
        # `super::x` in a file directly under stores/ names a sibling (the registry
        # names the store folders so).
        if path.parent == STORES:
            names = re.findall(r"\bsuper::(\w+)", code)
            for group in re.findall(r"\bsuper::\{([^}]*)\}", code):
                names += re.findall(r"\w+", group)
            for name in names:
                target = f"stores/{name}" if name in children else "stores"
                if target != node:
                    deps.add(target)
    problems = []
    for node in sorted(edges):
        if not (node.startswith("stores/") and node[len("stores/"):] in folders):
            continue
        for dep in sorted(edges[node]):
            if dep.startswith("stores/") and dep[len("stores/"):] in folders or dep in (
                "config",
                "engine",
            ):
                problems.append(f"store folder {node} imports {dep}")

    # Cycles: depth-first search over the graph.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                problems.append("import cycle: " + " -> ".join(cycle))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)

    for node in sorted(edges):
        print(f"{node} -> {' '.join(sorted(edges[node])) or '(nothing)'}")
    if problems:
        print()
        for p in problems:
            print(f"error: {p}")
        return 1
    print("\nno import cycle; store folders import no other store, config or engine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
