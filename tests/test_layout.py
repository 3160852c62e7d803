"""The layout rules of the code: the diagnostics wing stays out of the product, no import
circle, functions short enough to read at once, and the update's computation pinned by
fingerprints."""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / 'dreamer_tf'
# Commands that exist to run the diagnostics: thin shells around them.
DIAGNOSTIC_COMMANDS = {'cli/benchmark.py', 'cli/diagnose.py'}


def _imports(path):
    """Every dreamer_tf module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f'{node.module}.{alias.name}' for alias in node.names}
    return {name for name in found if name.split('.')[0] in ('dreamer_tf', 'dreamer_tf_export')}


def _product():
    files = [p for p in PACKAGE.rglob('*.py') if 'diagnostics' not in p.parts
             and p.relative_to(PACKAGE).as_posix() not in DIAGNOSTIC_COMMANDS]
    return files + list((ROOT / 'export').glob('*.py'))


def test_no_product_module_imports_the_diagnostics_wing():
    offenders = sorted(str(p.relative_to(ROOT)) for p in _product()
                       if any(name.startswith('dreamer_tf.diagnostics') for name in _imports(p)))
    assert not offenders, f'import dreamer_tf.diagnostics only from diagnostics: {offenders}'


def _module(path):
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def test_no_import_circle_between_modules():
    modules = {_module(p): p for p in PACKAGE.rglob('*.py')}
    graph = {name: {m for m in _imports(path) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's __init__ is imported by its submodules' parents: not an edge back.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + '.')}
    state, cycle = {}, []

    def visit(name, stack):
        state[name] = 'open'
        for other in sorted(graph[name]):
            if state.get(other) == 'open':
                cycle.append(stack[stack.index(other):] + [other])
            elif other not in state:
                visit(other, stack + [other])
        state[name] = 'done'

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycle, f'import circles: {cycle}'


# Lines of the longest function outside tests (architecture page: read at once).
MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_a_page():
    files = [*PACKAGE.rglob('*.py'), *(ROOT / 'export').rglob('*.py'),
             *(ROOT / 'scripts').glob('*.py')]
    long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f'{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})')
    assert not long, f'functions over {MAX_FUNCTION_LINES} lines: {long}'


def test_every_preset_computes_what_its_fingerprint_says():
    """Metrics after two updates on fixed data (dreamer_tf/diagnostics/fingerprint.py);
    regenerate the file only for a change meant to change the computation."""
    from dreamer_tf.diagnostics import fingerprint

    stored = json.loads((ROOT / 'tests' / 'data' / 'fingerprints.json').read_text())
    assert sorted(stored) == sorted(fingerprint.CASES)
    for name, case in fingerprint.CASES.items():
        got = fingerprint.fingerprint(*case)
        assert sorted(got) == sorted(stored[name]), name
        for key, value in stored[name].items():
            assert got[key] == pytest.approx(value, rel=1e-3, abs=1e-4), (name, key)
