#!/usr/bin/env python3
"""Fails on an import cycle between flowgate's modules.

Reads every `crate::` and `super::` path in src/ (in `use` lines and inline), resolves it
to the module that defines it, and builds, for every module, the graph of which of its
children use which. A cycle among siblings (two top-level modules, or two files of one
folder) is a layering error: one of them must move down. A child naming its own ancestor
is not an edge (a module's own vocabulary is what its children share); neither is an
ancestor naming its descendant.

Usage: .ci/layers.py [SRC_DIR]   (default: src). Exit 0 when acyclic, 1 with the cycles.
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
src = os.path.normpath(src)

modules = {}  # tuple path -> file
for root, _dirs, files in os.walk(src):
    for f in files:
        if not f.endswith(".rs"):
            continue
        full = os.path.join(root, f)
        rel = os.path.relpath(full, src)[:-3].split(os.sep)
        if rel in (["lib"], ["main"]):
            path = ()
        elif rel[-1] == "mod":
            path = tuple(rel[:-1])
        else:
            path = tuple(rel)
        if rel == ["main"]:
            continue  # the binary is a client of the library, above every layer
        modules[path] = full

def resolve(parts):
    """Longest prefix of `parts` that is a module."""
    for n in range(len(parts), -1, -1):
        if tuple(parts[:n]) in modules:
            return tuple(parts[:n])
    return ()

def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())

def expand_use(body):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    body = body.strip()
    m = re.match(r"^(.*?)::\{(.*)\}$", body, flags=re.S)
    if not m:
        return [body.split(" as ")[0].strip()]
    prefix, inner = m.group(1), m.group(2)
    out, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    out.append(cur)
    res = []
    for item in out:
        item = item.strip()
        if not item:
            continue
        if item == "self":
            res.append(prefix)
        else:
            res.extend(prefix + "::" + e for e in expand_use(item))
    return res

def absolute(path, here):
    parts = [p for p in re.split(r"::", path) if p]
    if not parts:
        return None
    if parts[0] == "crate":
        return parts[1:]
    if parts[0] in ("super", "self"):
        base = list(here)
        while parts and parts[0] in ("super", "self"):
            if parts.pop(0) == "super":
                base = base[:-1]
        return base + parts
    return None

edges = set()
for here, file in modules.items():
    text = strip_comments(open(file, encoding="utf-8").read())
    paths = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", text, flags=re.S):
        paths.extend(expand_use(re.sub(r"\s+", "", m.group(1)).replace(",}", "}")))
    # inline paths such as `crate::proxy::shed::Priority::High` or `super::Foo`
    for m in re.finditer(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", text):
        paths.append(m.group(1))
    for p in paths:
        parts = absolute(p, here)
        if parts is None:
            continue
        target = resolve(parts)
        if target != here:
            edges.add((here, target))

# sibling graph: for each edge, the first point where the two paths diverge
sib = {}
for a, b in edges:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    if n == len(a) or n == len(b):
        continue  # ancestor <-> descendant
    parent = a[:n]
    sib.setdefault(parent, {}).setdefault(a[n], {}).setdefault(b[n], []).append((a, b))

def cycles(graph):
    """Strongly connected components of size > 1 (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in list(graph):
        if v not in index:
            visit(v)
    return out

bad = 0
for parent in sorted(sib):
    graph = sib[parent]
    for comp in cycles(graph):
        bad += 1
        where = "::".join(("crate",) + parent)
        print(f"cycle under {where}: {' <-> '.join(comp)}")
        for a in comp:
            for b in comp:
                for x, y in graph.get(a, {}).get(b, [])[:3]:
                    print(f"    {'::'.join(x)} uses {'::'.join(y)}")
if bad:
    sys.exit(1)
print(f"no import cycles among {len(modules)} modules")
