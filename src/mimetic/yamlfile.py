"""YAML files that people write (configs, claims): a key given twice in one mapping is an error.

PyYAML keeps the last of two equal keys silently: `lr: 0.001` then `lr: 0.5` trains at 0.5.
"""

from __future__ import annotations

import os
from typing import Any

import yaml


class DuplicateKey(ValueError):
    """A mapping gives one key twice; the message names its path and both lines."""


# libyaml's parser where PyYAML has it (the workflow reads these files when it plans).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check(node: yaml.Node, path: str, file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key, line = str(key_node.value), key_node.start_mark.line + 1
            where = f"{path}.{key}" if path else key
            if key in seen:
                raise DuplicateKey(f"{where}: duplicate key {key!r} (lines {seen[key]} and {line} of {file}); keep one")
            seen[key] = line
            _check(value_node, where, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check(item, f"{path}[{i}]", file)


def load(path: str | os.PathLike) -> Any:
    """The file's content, as yaml.safe_load reads it; DuplicateKey for a key given twice,
    yaml.YAMLError for a file that is not YAML. Parsed once: the node tree is checked, then built."""
    with open(path) as f:
        loader = _Loader(f)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check(node, "", str(path))
            return loader.construct_document(node)
        finally:
            loader.dispose()
