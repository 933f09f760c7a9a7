"""YAML the commands read (``--config`` files, default configs, values on the command line
and strings inside configs), scanned before it is loaded.

A config is code (its ``class_path`` entries instantiate any importable class), but reading
one must still end: a YAML "billion laughs" file (anchors whose aliases nest, each use
repeating the one before nine times) is a few hundred bytes that expand to ~10⁹ nodes, and
jsonargparse walks the expansion, so ``dynamo fit --config bomb.yaml`` ran until memory was
gone. :func:`guard_yaml_loading` (called by every command before it parses) puts
:func:`scan_yaml` in front of jsonargparse's YAML loader, which reads the event stream
(PyYAML's parser is iterative; nothing is built or expanded) and refuses, with one
:class:`ConfigFileError` line naming the file,

- aliases that expand to more than :data:`MAX_ALIAS_NODES` nodes in all (each use of an
  alias counts every node of its anchor's expansion, computed once per anchor), or an alias
  used inside its own anchor (an infinite expansion);
- collections nested deeper than :data:`MAX_YAML_DEPTH` (the loader and jsonargparse
  recurse into them).

jsonargparse reads YAML in two ways: its ``"yaml"`` loader (config files: the file's name
comes with the text) and its module function ``yaml_load``, which it calls directly on
strings it converts to typed values (``max_steps: '[&a ...]'`` in a file, or on the command
line), so both are wrapped. Plain configs (``configs/**/*.yaml``, the configs runs save) use a
few hundred nodes, a few levels deep, and load exactly as before.
"""

from __future__ import annotations

from typing import Any

import yaml
from jsonargparse import _loaders_dumpers, set_loader

__all__ = ["MAX_ALIAS_NODES", "MAX_YAML_DEPTH", "ConfigFileError", "checked_yaml_load",
           "guard_yaml_loading", "scan_yaml"]

MAX_ALIAS_NODES = 100_000
"""Most nodes that the aliases of one YAML text may add when expanded."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and sequences a YAML text may have (configs have about 6)."""

_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_LOAD = _loaders_dumpers.yaml_load  # jsonargparse's own, taken before it is wrapped
_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


class ConfigFileError(yaml.YAMLError, ValueError):
    """A YAML text refused before loading. A ``YAMLError``, so that jsonargparse reports it
    as a config it could not parse (one line, status 2); a ``ValueError`` elsewhere."""


def scan_yaml(text: str, name: str = "") -> None:
    """Refuse ``text`` if loading it would expand or nest past the limits (module doc).

    Args:
        text: the YAML text.
        name: what to call it in the message (a file name); empty for "YAML value".

    Raises:
        ConfigFileError: one line naming ``name``, the fault and the limit. YAML that does
            not parse is left to the loader, which reports it.
    """
    where = f"config file {name}" if name else "YAML value"
    sizes: dict[str, int] = {}   # anchor -> nodes of its expansion (its node included)
    open_nodes: list[list[Any]] = [[None, 0]]  # [anchor, nodes so far] per open collection
    added = 0
    try:
        for event in yaml.parse(text, Loader=_PARSER):
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in (anchor for anchor, _ in open_nodes):
                    raise ConfigFileError(f"{where}: alias *{event.anchor} is used inside its "
                                          "own anchor (an infinite expansion); refused")
                size = sizes.get(event.anchor, 1)  # an undefined alias: the loader says so
                added += size
                if added > MAX_ALIAS_NODES:
                    raise ConfigFileError(
                        f"{where}: its aliases expand to more than {MAX_ALIAS_NODES} nodes "
                        f"(*{event.anchor} alone is {size}: a YAML alias bomb?); refused "
                        "before loading, write the values out instead")
                open_nodes[-1][1] += size
            elif isinstance(event, _OPEN):
                if len(open_nodes) > MAX_YAML_DEPTH:
                    raise ConfigFileError(f"{where}: nested deeper than {MAX_YAML_DEPTH} "
                                          "levels; refused before loading")
                open_nodes.append([event.anchor, 1])
            elif isinstance(event, _CLOSE):
                anchor, size = open_nodes.pop()
                if anchor is not None:
                    sizes[anchor] = size
                open_nodes[-1][1] += size
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                open_nodes[-1][1] += 1
    except ConfigFileError:
        raise
    except yaml.YAMLError:
        return  # not YAML: the loader reports it in its own words


def checked_yaml_load(stream: str, path: str = "") -> Any:
    """jsonargparse's YAML loader after :func:`scan_yaml` (``path``: the config file, when
    the text is one)."""
    scan_yaml(stream, str(path))
    return _YAML_LOAD(stream)


def guard_yaml_loading() -> None:
    """Make every YAML text jsonargparse loads in this process go through
    :func:`scan_yaml` first (idempotent; plain YAML loads as before)."""
    if _loaders_dumpers.yaml_load is not checked_yaml_load:
        _loaders_dumpers.yaml_load = checked_yaml_load  # strings converted to typed values
        set_loader("yaml", checked_yaml_load, (yaml.YAMLError,))  # config files, by name
