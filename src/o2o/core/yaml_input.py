"""The one YAML reader of every user input: scenario files, ``--set`` values (scenario and
hyper-parameters) and sweep specs.

A YAML document can ask for far more than its size: a few kilobytes of nested aliases ("billion
laughs") expand to gigabytes, and a thousand nested brackets exhaust Python's recursion. This
reader refuses both before anything expands, in one line that names the place:

* anchors and aliases (``&a``, ``*a``) are refused where the composer meets them, so nothing is
  ever expanded (no o2o input needs them; write the values out);
* nesting deeper than ``MAX_DEPTH`` is refused while the document is composed, one level at a
  time (PyYAML's parser keeps its own stack, so only composition recurses);
* a text longer than its ``max_chars`` is refused before it is parsed;
* a key given twice in one mapping is refused (YAML would silently keep the last one).

Everything runs in Python (PyYAML's pure loader), so Ctrl-C stops it at any moment.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode

from o2o.core.errors import UserError

MAX_DEPTH = 32                 # nested lists or mappings; an o2o input needs 3
MAX_FILE_CHARS = 1_000_000     # a scenario or sweep spec file (they are a few hundred bytes)
MAX_VALUE_CHARS = 10_000       # one --set value


class YamlInputError(UserError):
    """A YAML input o2o refuses; the message is one line and names the place."""


class _Refused(yaml.MarkedYAMLError):
    pass


class GuardedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases, anchors, deep nesting and repeated keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise _Refused(None, None, f"alias *{event.anchor} (anchors and aliases are not "
                           "supported; write the values out)", event.start_mark)
        if isinstance(event, (ScalarEvent, SequenceStartEvent, MappingStartEvent)) \
                and event.anchor is not None:
            raise _Refused(None, None, f"anchor &{event.anchor} (anchors and aliases are not "
                           "supported; write the values out)", event.start_mark)
        nested = isinstance(event, (SequenceStartEvent, MappingStartEvent))
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep",
                               event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:       # an unhashable key: the constructor says so below
                    continue
                if repeated:
                    raise _Refused(None, None, f"key {key!r} given twice", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _problem(exc: yaml.YAMLError) -> tuple[str, str]:
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return where, " ".join(str(problem).split())


def parse_yaml(text: str, what: str, *, max_chars: int = MAX_FILE_CHARS) -> Any:
    """The YAML document in ``text``; ``what`` names it in a refusal (``sweep spec x.yaml``,
    ``--set nodes``)."""
    if len(text) > max_chars:
        raise YamlInputError(f"{what}: {len(text):,} characters, more than the {max_chars:,} "
                             "supported")
    try:
        return yaml.load(text, Loader=GuardedLoader)  # noqa: S506 (a SafeLoader)
    except _Refused as exc:
        where, problem = _problem(exc)
        raise YamlInputError(f"{what}{where}: {problem}") from None
    except yaml.YAMLError as exc:
        where, problem = _problem(exc)
        raise YamlInputError(f"{what}{where}: not valid YAML ({problem})") from None
    except RecursionError:  # cannot happen below MAX_DEPTH; kept one line if it ever does
        raise YamlInputError(f"{what}: nested too deeply") from None
