"""The stubs (python/xent/_xent.pyi) are current: every function and class of the Rust
module is in them with the same parameters, kinds and defaults, and nothing more."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import xent
import xent._xent as native

STUB = Path(xent.__file__).with_name("_xent.pyi")


def _stub_signatures():
    tree = ast.parse(STUB.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node.args
        elif isinstance(node, ast.ClassDef):
            init = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
            found[node.name] = init[0].args if init else None
    return found


def _params(args: ast.arguments, skip_self: bool):
    positional = args.posonlyargs + args.args
    if skip_self:
        positional = positional[1:]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out = [(a.arg, "positional", None if d is None else ast.literal_eval(d)) for a, d in zip(positional, defaults)]
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        out.append((a.arg, "keyword", None if d is None else ast.literal_eval(d)))
    return out


def _runtime(obj):
    out = []
    for p in inspect.signature(obj).parameters.values():
        kind = "keyword" if p.kind == p.KEYWORD_ONLY else "positional"
        out.append((p.name, kind, None if p.default is p.empty else p.default))
    return out


def test_stubs_are_current():
    stubs = _stub_signatures()
    public = {n for n in dir(native) if not n.startswith("_") and callable(getattr(native, n))}
    assert set(stubs) == public
    for name, args in stubs.items():
        obj = getattr(native, name)
        want = _params(args, skip_self=inspect.isclass(obj))
        assert _runtime(obj) == want, name
