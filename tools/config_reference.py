"""Write the configuration reference, docs/configuration.md, from the schema in train/config.py.

    python tools/config_reference.py            # rewrite docs/configuration.md
    python tools/config_reference.py --check    # exit 1 if docs/configuration.md is not what the schema gives

A key's type and default come from its dataclass field, its meaning from the comment beside the field (or the
comment lines right above it), a section's introduction from its class docstring, the allowed values from
`CHOICES`. The schema is the one place a key is described; tests/test_config.py fails when the file is stale.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import re
import sys
import tokenize
import typing
from pathlib import Path

import yaml

from train import config as schema

ROOT = Path(__file__).resolve().parents[1]

REFERENCE = ROOT / "docs" / "configuration.md"

HEADER = """\
# Configuration reference

<!-- Generated from train/config.py by `python tools/config_reference.py`: edit the schema's comments, not this
file (the test suite fails when the two differ). -->

A run reads one YAML file (`--config`; `config/grpo_config.yaml` is the faithful recipe and lists every key,
`config/quickstart.yaml` the CPU quick start). A key the file leaves out takes the default below. Any key can be
overridden on the command line as `section.key=value`, the value read as YAML:

```bash
./launch_trl.sh 2 --config my.yaml training.max_steps=50 vllm.gpu_memory_utilization=0.4
```

A mistyped or unknown key, a wrong type, a value outside its choices or a batch that does not divide stops the
run before anything is loaded, with one line naming the key and the fix (exit code 2). `launch_trl.sh` runs
these checks once, for the GPUs and machines it was given (rollouts over the training processes, vLLM's
tensor-parallel size, GPUs requested against GPUs present), before it starts any process. Relative paths are
taken from the current folder, or else from the project root.
"""

TRL_EXAMPLE = """\
```yaml
trl:
  save_only_model: true     # checkpoints without optimizer state (they cannot be resumed)
  torch_compile: true
```
"""

REWARDS_EXAMPLE = """\
```yaml
rewards:
  answer: 1.0                      # built in: 1 for a correct answer in the r1_zero format
  format: 0.0                      # built in: the format rate, logged and not trained on
  my_rewards:length_penalty: 0.1   # module:function, importable (installed, or on PYTHONPATH)
```
"""
EXAMPLES = {"trl": TRL_EXAMPLE, "rewards": REWARDS_EXAMPLE}


def comments(source: str) -> dict[int, tuple[str, bool]]:
    """Line number -> (comment text, whether the comment is the whole line)."""
    lines = source.splitlines()
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            out[row] = (tok.string.lstrip("#").strip(), not lines[row - 1][:col].strip())
    return out


def field_notes(source: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """For every class of the module: {field: its comment} and the class docstring."""
    notes, docs = {}, {}
    by_line = comments(source)
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs[node.name] = " ".join((ast.get_docstring(node) or "").split())
        notes[node.name] = {}
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            above, row = [], stmt.lineno - 1
            while row in by_line and by_line[row][1]:
                above.insert(0, by_line[row][0])
                row -= 1
            beside = [by_line[r][0] for r in range(stmt.lineno, stmt.end_lineno + 1)
                      if r in by_line and not by_line[r][1]]
            notes[node.name][stmt.target.id] = " ".join(above + beside)
    return notes, docs


def type_name(tp) -> str:
    names = {str: "string", int: "integer", float: "number", bool: "true/false", dict: "mapping"}
    if typing.get_origin(tp) is list:
        return "name or list of names"
    args = typing.get_args(tp)
    if type(None) in args:
        (base,) = [a for a in args if a is not type(None)]
        return f"{names[base]} or null"
    return names[tp]


def yaml_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def cell(text: str) -> str:
    """Markdown-safe table cell: outside `code`, `<` would start an HTML tag and `|` a new column."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace("|", "\\|")
    return "`".join(parts)


def render() -> str:
    notes, docs = field_notes(Path(schema.__file__).read_text())
    out = [HEADER]
    for section in dataclasses.fields(schema.Config):
        out.append(f"## {section.name}\n")
        if section.type in (dict, "dict"):
            out += [notes["Config"][section.name], "", EXAMPLES[section.name]]
            continue
        cls = section.default_factory
        out += [docs[cls.__name__], "", "| key | type | default | meaning |", "|---|---|---|---|"]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{section.name}.{f.name}"
            meaning = notes[cls.__name__][f.name]
            if key in schema.CHOICES:
                choices = ", ".join(f"`{c}`" for c in schema.CHOICES[key])
                meaning += f" One of {choices}." if meaning.endswith(".") else f"; one of {choices}"
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            out.append(f"| `{key}` | {type_name(hints[f.name])} | `{yaml_value(default)}` | {cell(meaning)} |")
        out.append("")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when the file is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not REFERENCE.is_file() or REFERENCE.read_text() != text:
            print(f"{REFERENCE.relative_to(ROOT)} is stale: run python tools/config_reference.py", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text)
    print(f"wrote {REFERENCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
