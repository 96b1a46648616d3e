"""Bounded, strict YAML loading for files a user writes by hand (mappings).

``yaml.safe_load`` is safe against code execution but not against input that is
merely hostile or careless: it keeps the last of two equal keys without a word,
expands aliases without bound (a few lines can stand for 10^9 nodes, and anything
that walks the result then hangs), nests as deep as the file says, and turns an
unquoted ``yes`` into ``True``. :func:`load_yaml` refuses each of these with the
line it is on, and records where every key is so that later checks can name it.

Limits (stated here, reported by name when hit): :data:`MAX_BYTES`,
:data:`MAX_DEPTH`, :data:`MAX_NODES` (after alias expansion).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 256 * 1024  # a mapping is a few hundred lines; a bigger file is not one
MAX_DEPTH = 16  # a mapping nests 4 levels (features.hb.codes.X)
MAX_NODES = 20_000  # nodes once aliases are expanded
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"

Path_ = tuple[str, ...]
ErrorFactory = Callable[[str | Path, str | int, str, str], Exception]


@dataclasses.dataclass(frozen=True)
class LoadedYaml:
    """A parsed YAML file with where its parts are.

    Attributes:
        data: the document (mapping keys are always the text written in the file).
        lines: 1-based line of each key path (``("features", "hb", "unit")``), and of list items.
        bool_scalars: paths of unquoted scalars YAML 1.1 reads as booleans (``yes``, ``off``), by line.
    """

    data: Any
    lines: dict[Path_, int]
    bool_scalars: dict[Path_, int]

    def line(self, path: Path_) -> int | None:
        """The line of ``path``, else of its nearest ancestor in the file, else ``None``."""
        for k in range(len(path), 0, -1):
            if path[:k] in self.lines:
                return self.lines[path[:k]]
        return None


class _Loader(yaml.SafeLoader):
    """SafeLoader with bounded nesting, text keys and duplicate keys refused."""

    def __init__(self, stream: str, path: str | Path, error: ErrorFactory) -> None:
        super().__init__(stream)
        self._path, self._error, self._depth = path, error, 0

    def _fail(self, node_or_mark: Any, field: str, msg: str) -> Exception:
        mark = getattr(node_or_mark, "start_mark", node_or_mark)
        line = "?" if mark is None else mark.line + 1
        err = self._error(self._path, f"{line} (line)", field, msg)
        err.from_bounded_loader = True  # type: ignore[attr-defined]  # not a parser failure: pass it on
        return err

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        # The composer recurses once per level: bound it before Python's own limit does.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise self._fail(
                    self.peek_event(), "(yaml)", f"nested deeper than {MAX_DEPTH} levels; not a mapping file"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[str, Any]:
        explicit = list(node.value)
        self.flatten_mapping(node)  # `<<: *anchor` merges: explicit keys override merged ones
        out: dict[str, Any] = {}
        first: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self._fail(key_node, "(yaml)", "a key must be plain text, not a list or mapping")
            key = key_node.value  # the text as written: `yes:` and `01:` stay "yes" and "01"
            from_merge = not any(key_node is k for k, _ in explicit)
            if key in first and not from_merge and any(first[key] is k for k, _ in explicit):
                raise self._fail(
                    key_node,
                    key,
                    f"key given twice (lines {first[key].start_mark.line + 1} and "
                    f"{key_node.start_mark.line + 1}); keep one",
                )
            if not from_merge or key not in first:
                first[key] = key_node
            out[key] = self.construct_object(value_node, deep=deep)
        return out


def _text_timestamp(loader: yaml.SafeLoader, node: ScalarNode) -> str:
    # A mapping never needs a date object; `2016-02-30` must not fail inside the constructor.
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _text_timestamp)


def _walk(root: Node, fail: Callable[[Node, str], Exception]) -> tuple[dict[Path_, int], dict[Path_, int]]:
    """Key lines and boolean scalars; refuses recursive aliases and expansion beyond MAX_NODES."""
    lines: dict[Path_, int] = {}
    bools: dict[Path_, int] = {}
    keys: dict[Path_, Node] = {}  # top-level key nodes
    count = 0
    active: set[int] = set()

    def visit(node: Node, path: Path_) -> None:
        nonlocal count
        count += 1
        if count > MAX_NODES:  # name the top-level key whose value blew up, not a leaf deep inside
            raise fail(
                node if path[:1] not in keys else keys[path[:1]],
                f"expands to more than {MAX_NODES} nodes (aliases?); not a mapping file",
            )
        if id(node) in active:
            raise fail(node, "an alias refers to the node that contains it (a cycle)")
        if isinstance(node, ScalarNode):
            if node.tag == _BOOL and node.style is None:
                bools[path] = node.start_mark.line + 1
            return
        active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                for i, item in enumerate(node.value):
                    lines.setdefault((*path, str(i)), item.start_mark.line + 1)
                    visit(item, (*path, str(i)))
            elif isinstance(node, MappingNode):
                merges = [v for k, v in node.value if k.tag == _MERGE]
                for key_node, value_node in node.value:
                    if key_node.tag == _MERGE:
                        continue
                    key = (*path, str(getattr(key_node, "value", "?")))
                    lines.setdefault(key, key_node.start_mark.line + 1)
                    if not path:
                        keys.setdefault(key, key_node)
                    if isinstance(key_node, ScalarNode) and key_node.tag == _BOOL and key_node.style is None:
                        bools[key] = key_node.start_mark.line + 1
                    visit(value_node, key)
                for value_node in merges:  # after the explicit keys, whose lines win
                    visit(value_node, path)
        finally:
            active.discard(id(node))

    visit(root, ())
    return lines, bools


def load_yaml(path: str | Path, error: ErrorFactory) -> LoadedYaml:
    """Read and parse a hand-written YAML file within the module's limits.

    Args:
        path: the file.
        error: builds the exception to raise from ``(path, row, field, message)``
            (e.g. :class:`harmonize.mapping.MappingError`); ``row`` is ``"<n> (line)"``.

    Returns:
        The document, with the line of every key.

    Raises:
        Whatever ``error`` builds: unreadable or oversized file, not UTF-8, not
        YAML, nested or expanded beyond the limits, a key given twice.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise error(path, 0, "(file)", f"{size} bytes; a mapping file is at most {MAX_BYTES} bytes")
        data = path.read_bytes()
    except OSError as err:
        raise error(path, 0, "(file)", f"cannot read it: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise error(
            path, f"{line} (line)", "(file encoding)", "not UTF-8 text; save the mapping as UTF-8"
        ) from None
    loader = None
    try:
        loader = _Loader(text, path, error)  # its reader refuses control characters already here
        node = loader.get_single_node()
        if node is None:
            return LoadedYaml(None, {}, {})
        fail = loader._fail
        lines, bools = _walk(node, lambda n, msg: fail(n, "(yaml)", msg))
        doc = loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = "?" if mark is None else mark.line + 1
        if isinstance(err, yaml.reader.ReaderError):  # a control character: it knows the offset only
            line = text[: err.position].count("\n") + 1
        msg = " ".join(str(err).replace('in "<unicode string>", ', "").split())
        raise error(path, f"{line} (line)", "(yaml)", f"not valid YAML: {msg}") from None
    except (ValueError, TypeError, OverflowError) as err:  # a scalar the constructor cannot build
        if getattr(err, "from_bounded_loader", False):
            raise
        raise error(path, "? (line)", "(yaml)", f"not valid YAML: {err}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return LoadedYaml(doc, lines, bools)
