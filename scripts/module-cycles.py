#!/usr/bin/env python3
"""Find import cycles between the crate's modules.

Usage: scripts/module-cycles.py [SRC_DIR]   (default: src)

Each file under SRC_DIR is one module: `a/b.rs` and `a/b/mod.rs` are `a::b`, `lib.rs` and
`main.rs` the crate root (`crate`). A module refers to another through a path that starts with
`crate::`, the crate's own name (in `main.rs`), `super::` or `self::`, or with a name that a `use`
or a `mod x;` bound in the same file. Each path is resolved to the longest prefix that is a
module; a name the target module only re-exports (`pub use`, or any `use` a child may see) is
followed to the module that defines it, so a facade such as `application::AppError` counts as a
reference to `application::error`. A module bound by `use crate::store;` counts where it is
used (`store::claims::f` refers to `store::claims`), not at the `use`. `mod x;` declarations
are not references; comments and string literals are blanked before anything is read; paths
inside inline modules (`#[cfg(test)] mod tests`) count for the file, and a `use super::*` there
refers to the file itself, so it adds nothing.

The graph's strongly connected components (Tarjan) are the cycles. For each component the
script prints, for every edge inside it, the shortest cycle through that edge, each followed by
where each of its references stands. Exit status 1 when there is a cycle, else 0 with
`no module import cycles (N modules)`.
"""

import re
import sys
from collections import deque
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
CHAR_LITERAL = re.compile(r"'(?:\\(?:u\{[0-9a-fA-F]{1,6}\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'")
RAW_STRING_START = re.compile(r"(?:b|c)?r(#*)\"")


def blank_comments_and_strings(text):
    """The text with comments and the insides of string and char literals turned to spaces.

    Newlines stay, so offsets and line numbers still match the file."""
    out = list(text)
    n = len(text)

    def blank(start, end):
        for k in range(start, end):
            if out[k] != "\n":
                out[k] = " "

    i = 0
    while i < n:
        c = text[i]
        prev_is_ident = i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "bcr" and not prev_is_ident and RAW_STRING_START.match(text, i):
            m = RAW_STRING_START.match(text, i)
            closing = '"' + m.group(1)
            end = text.find(closing, m.end())
            end = n if end < 0 else end + len(closing)
            blank(m.end(), max(m.end(), end - len(closing)))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i + 1, min(j, n))
            i = j + 1
        elif c == "'":
            m = CHAR_LITERAL.match(text, i)
            if m:
                blank(i + 1, m.end() - 1)
                i = m.end()
            else:
                i += 1  # a lifetime or a label
        else:
            i += 1
    return "".join(out)


def module_path(src_dir, file):
    """`a/b.rs`, `a/b/mod.rs` -> ("a", "b"); `lib.rs`, `main.rs` -> () (the crate root)."""
    parts = list(file.relative_to(src_dir).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        parts = []
    return tuple(parts)


def show(module):
    return "::".join(module) if module else "crate"


def matching_brace(text, open_at):
    depth = 0
    for k in range(open_at, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(text)


def parse_use_tree(tree):
    """`a::{b, c::d as e, f::*}` -> [(["a","b"], None, False), (["a","c","d"], "e", False), ...]."""
    tokens = re.findall(r"::|[{},*]|" + IDENT, tree)
    pos = 0
    items = []

    def parse(prefix):
        nonlocal pos
        segments = list(prefix)
        while pos < len(tokens):
            tok = tokens[pos]
            if tok == "::":
                pos += 1
            elif tok == "{":
                pos += 1
                while pos < len(tokens) and tokens[pos] != "}":
                    if tokens[pos] == ",":
                        pos += 1
                        continue
                    parse(segments)
                pos += 1
                return
            elif tok == "*":
                pos += 1
                items.append((segments, None, True))
                return
            elif tok in (",", "}"):
                break
            elif tok == "as" and segments:
                alias = tokens[pos + 1] if pos + 1 < len(tokens) else None
                pos += 2
                items.append((segments, alias, False))
                return
            else:
                segments = segments + [tok]
                pos += 1
        if segments and segments != list(prefix):
            items.append((segments, None, False))

    while pos < len(tokens):
        if tokens[pos] == ",":
            pos += 1
            continue
        parse([])
    # `prefix::{self}` names the prefix itself.
    fixed = []
    for segments, alias, glob in items:
        if segments and segments[-1] == "self" and len(segments) > 1:
            segments = segments[:-1]
        fixed.append((segments, alias, glob))
    return fixed


class Source:
    """One file: its module, its scopes (inline `mod x { }`), bindings and the paths it uses."""

    def __init__(self, src_dir, file):
        self.file = file
        self.module = module_path(src_dir, file)
        self.raw = file.read_text(encoding="utf-8")
        self.text = blank_comments_and_strings(self.raw)
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", self.raw)]
        # (start, end, scope) for each inline module, scope relative to the file's module.
        self.inline = []
        for m in re.finditer(r"(?<![\w$])mod\s+(" + IDENT + r")\s*\{", self.text):
            close = matching_brace(self.text, m.end() - 1)
            self.inline.append((m.start(), close, m.group(1)))
        # scope -> name -> ("mod", path) | ("use", segments, offset)
        self.bindings = {}
        # (offset, segments, glob, scope) for each use item; kept for the edges at the use site.
        self.uses = []
        code = list(self.text)
        for m in re.finditer(r"(?<![\w$])mod\s+(" + IDENT + r")\s*;", self.text):
            scope = self.scope_at(m.start())
            self.bind(scope, m.group(1), ("mod", self.module + scope + (m.group(1),)))
        for start, _end, name in self.inline:
            scope = self.scope_at(start)
            self.bind(scope, name, ("mod", self.module + scope + (name,)))
        for m in re.finditer(r"(?<![\w$])use\s+([^;{}]*(?:\{[^;]*\})?[^;{}]*);", self.text):
            scope = self.scope_at(m.start())
            for segments, alias, glob in parse_use_tree(m.group(1)):
                self.uses.append((m.start(), segments, glob, scope))
                if not glob:
                    name = alias or segments[-1]
                    if name != "_":
                        self.bind(scope, name, ("use", segments, m.start()))
            for k in range(m.start(), m.end()):
                if code[k] != "\n":
                    code[k] = " "
        self.code = "".join(code)

    def bind(self, scope, name, target):
        self.bindings.setdefault(scope, {}).setdefault(name, target)

    def scope_at(self, offset):
        """The inline modules around `offset`, outermost first (relative to the file's module)."""
        scope = []
        for start, end, name in self.inline:
            if start < offset < end:
                scope.append((start, name))
        return tuple(name for _, name in sorted(scope))

    def line_of(self, offset):
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def line_text(self, offset):
        line = self.line_of(offset)
        end = self.line_starts[line] if line < len(self.line_starts) else len(self.raw)
        return self.raw[self.line_starts[line - 1] : end].strip()


class Crate:
    def __init__(self, src_dir, crate_name):
        self.crate_name = crate_name
        self.sources = [Source(src_dir, f) for f in sorted(src_dir.rglob("*.rs"))]
        self.by_module = {}
        for source in self.sources:
            self.by_module.setdefault(source.module, []).append(source)
        self.modules = set(self.by_module)

    def lookup(self, source, scope, name):
        """A name bound in `scope` of `source`, else in an enclosing scope (which a child module
        sees through its `use super::*`)."""
        for k in range(len(scope), -1, -1):
            bound = source.bindings.get(scope[:k], {}).get(name)
            if bound is not None:
                return bound
        return None

    def absolute(self, source, scope, segments, depth=0):
        """The path from the crate root that `segments` names in `scope` of `source`; None for a
        path outside the crate (std, another crate)."""
        if not segments or depth > 16:
            return None
        here = source.module + scope
        first, rest = segments[0], list(segments[1:])
        if first in ("crate", self.crate_name) and (first == "crate" or not self.lookup(source, scope, first)):
            return tuple(rest)
        if first == "self":
            return here + tuple(rest)
        if first == "super":
            base = list(here)
            base.pop() if base else None
            while rest and rest[0] == "super":
                rest.pop(0)
                base.pop() if base else None
            return tuple(base) + tuple(rest)
        bound = self.lookup(source, scope, first)
        if bound is None:
            return None
        if bound[0] == "mod":
            return bound[1] + tuple(rest)
        _, target, offset = bound
        if target == list(segments):  # `use x;` of an outside crate named like the path
            return None
        inner = self.absolute(source, source.scope_at(offset), target, depth + 1)
        return None if inner is None else inner + tuple(rest)

    def defining_module(self, path, depth=0):
        """The module a crate path refers to: its longest module prefix, followed through the
        imports of that module when the next segment is a name the module only imports."""
        for k in range(len(path), -1, -1):
            if path[:k] in self.modules:
                module, rest = path[:k], path[k:]
                break
        if rest and depth < 16:
            for source in self.by_module[module]:
                bound = source.bindings.get((), {}).get(rest[0])
                if bound is None:
                    continue
                if bound[0] == "mod":
                    return self.defining_module(bound[1] + rest[1:], depth + 1)
                target = self.absolute(source, (), bound[1], 0)
                if target is not None:
                    return self.defining_module(target + rest[1:], depth + 1)
        return module

    def is_module(self, path):
        return path in self.modules or any(m[: len(path)] == path for m in self.modules)

    def edges(self):
        """{(from, to): (file, line, text)}: the first reference found for each edge."""
        found = {}

        def add(source, offset, path):
            if path is None:
                return
            target = self.defining_module(path)
            if target != source.module:
                found.setdefault(
                    (source.module, target),
                    (source.file, source.line_of(offset), source.line_text(offset)),
                )

        for source in self.sources:
            for offset, segments, glob, scope in source.uses:
                path = self.absolute(source, scope, segments)
                if path is None:
                    continue
                # A module bound by `use` counts where it is used; a glob reaches into it.
                if glob or not self.is_module(path):
                    add(source, offset, path)
            pattern = r"(?<![\w$:])(" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)"
            for m in re.finditer(pattern, source.code):
                first = m.group(1)
                if first in ("Self", "std", "core", "alloc"):
                    continue
                scope = source.scope_at(m.start())
                if first not in ("crate", "self", "super", self.crate_name) and not self.lookup(
                    source, scope, first
                ):
                    continue
                segments = [first] + re.findall(IDENT, m.group(2))
                add(source, m.start(), self.absolute(source, scope, segments))
        return found


def strongly_connected(nodes, graph):
    """Tarjan's algorithm: the components, each a list of nodes."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(max(1000, 10 * len(nodes)))

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            components.append(sorted(component))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return components


def shortest_path(graph, start, goal, allowed):
    previous = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        if v == goal:
            path = []
            while v is not None:
                path.append(v)
                v = previous[v]
            return path[::-1]
        for w in sorted(graph.get(v, ())):
            if w in allowed and w not in previous:
                previous[w] = v
                queue.append(w)
    return None


def cycles_of(component, graph):
    """For each edge inside the component, the shortest cycle through it; duplicates removed."""
    members = set(component)
    seen, cycles = set(), []
    for u in component:
        for v in sorted(graph.get(u, ())):
            if v not in members:
                continue
            back = shortest_path(graph, v, u, members)
            cycle = [u] + back[:-1]
            k = cycle.index(min(cycle))
            canonical = tuple(cycle[k:] + cycle[:k])
            if canonical not in seen:
                seen.add(canonical)
                cycles.append(list(canonical))
    return sorted(cycles, key=lambda c: (len(c), c))


def crate_name(src_dir):
    cargo = src_dir.parent / "Cargo.toml"
    if not cargo.exists():
        return None
    name, section = None, None
    for line in cargo.read_text(encoding="utf-8").splitlines():
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            section = header.group(1).strip()
            continue
        value = re.match(r'\s*name\s*=\s*"([^"]+)"', line)
        if value and section == "lib":
            return value.group(1).replace("-", "_")
        if value and section == "package":
            name = value.group(1).replace("-", "_")
    return name


def main(argv):
    src_dir = Path(argv[1] if len(argv) > 1 else "src")
    if not src_dir.is_dir():
        print(f"module-cycles: {src_dir} is not a directory", file=sys.stderr)
        return 2
    crate = Crate(src_dir, crate_name(src_dir) or "crate")
    edges = crate.edges()
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    components = [c for c in strongly_connected(crate.modules, graph) if len(c) > 1]
    if not components:
        print(f"no module import cycles ({len(crate.modules)} modules)")
        return 0
    total = 0
    for component in components:
        cycles = cycles_of(component, graph)
        total += len(cycles)
        names = ", ".join(show(m) for m in component)
        print(f"modules in a cycle ({len(component)}): {names}")
        for cycle in cycles:
            print("  " + " -> ".join(show(m) for m in cycle + cycle[:1]))
            for a, b in zip(cycle, cycle[1:] + cycle[:1]):
                file, line, text = edges[(a, b)]
                print(f"      {show(a)} -> {show(b)}: {file}:{line}: {text}")
    print(
        f"{total} module import cycle(s) in {len(components)} group(s) "
        f"({len(crate.modules)} modules)"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
