#!/usr/bin/env python3
"""Checks the import graph of the workspace's own modules: no circles between files, and the
top-level modules of `actors` point only downward (service -> engine -> workflow/ledger ->
entities). Prints the graph's circles and upward edges; exits 1 if there are any.

A module's file depends on another when it names it in a path (`use`, or `crate::`/`super::`
paths in code). A `mod.rs` that only declares and re-exports its children is not a dependency of
those children, so a child that names its parent's re-exports instead of its sibling is counted.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lower rank may not import higher rank.
RANKS = {
    "engine": 3,
    "retention": 3,
    "workflow": 2,
    "ledger": 1,
    "cluster": 1,
    "providers": 1,
    "webhooks_out": 1,
    "batcher": 0, "clock": 0, "config_check": 0, "credits": 0, "db": 0, "images": 0,
    "metrics": 0, "net": 0, "outbound": 0, "progress": 0, "secret": 0, "storage": 0,
}


def modules(src):
    """file path -> module path (list of names) for a crate's src dir."""
    found = {}
    for folder, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            found[path] = rel
    return found


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def use_paths(text):
    """Every path named in the file, expanded from `use a::{b, c::d}` groups."""
    paths = []
    for body in re.findall(r"\buse\s+([^;]+);", text):
        paths.extend(expand(body.replace("\n", " ").replace(" ", "")))
    paths.extend(re.findall(r"\b((?:crate|super)(?:::\w+)+)", text))
    return paths


def expand(body):
    match = re.match(r"^(.*?)\{(.*)\}$", body)
    if not match:
        return [re.sub(r"as\w+$", "", body)]
    prefix, inner = match.groups()
    parts, depth, current = [], 0, ""
    for char in inner:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += char == "{"
        depth -= char == "}"
        current += char
    parts.append(current)
    out = []
    for part in filter(None, parts):
        out.extend(prefix + item for item in expand(part))
    return out


def resolve(path, here, known):
    """The known module a `crate::`/`super::` path names (its longest known prefix)."""
    parts = path.split("::")
    if parts[0] == "crate":
        target = parts[1:]
    elif parts[0] == "super":
        base = list(here)
        while parts and parts[0] == "super":
            base = base[:-1]
            parts = parts[1:]
        target = base + parts
    else:
        return None
    for cut in range(len(target), -1, -1):
        if tuple(target[:cut]) in known:
            return tuple(target[:cut])
    return None


def graph(src):
    files = modules(src)
    known = {tuple(module): path for path, module in files.items()}
    edges = {}
    for path, module in files.items():
        is_mod = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
        text = strip_comments(open(path).read())
        here = tuple(module)
        targets = set()
        for used in use_paths(text):
            target = resolve(used, module, known)
            if target is None or target == here:
                continue
            # A parent naming its own child (declaring or re-exporting it) is not a dependency.
            if target[: len(here)] == here and is_mod:
                continue
            targets.add(target)
        edges[here] = targets
    return edges


def circles(edges):
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def main():
    bad = 0
    for crate in ("actors/src", "src"):
        edges = graph(os.path.join(ROOT, crate))
        for circle in circles(edges):
            bad += 1
            print(f"{crate}: circle: " + " -> ".join("::".join(m) or "(root)" for m in circle))
        if crate == "actors/src":
            for source, targets in sorted(edges.items()):
                for target in sorted(targets):
                    if source and target and RANKS.get(source[0], 9) < RANKS.get(target[0], 9):
                        bad += 1
                        print(f"{crate}: upward: {'::'.join(source)} -> {'::'.join(target)}")
    print(f"import graph: {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
