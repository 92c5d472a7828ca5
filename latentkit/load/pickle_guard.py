"""Checks on untrusted pickles that run before and around unpickling.

* :func:`scan_opcodes` walks the opcode stream with :func:`pickletools.genops` (which executes nothing) and
  refuses, before any object is built: EXT1/2/4 (served by CPython from ``copyreg``'s extension cache
  without ``find_class``), persistent ids where none are expected, INST/OBJ/NEWOBJ_EX, out-of-band buffers,
  memo indices larger than the number of opcodes read so far (a 9-byte pickle must not size a memo of
  2^28 entries), stacks deeper than :data:`MAX_STACK` (nesting bombs, tracked from each opcode's documented
  stack effect) and ``GLOBAL`` names outside the caller's allow-list.
* :class:`LoadBudget` is one memory budget for a whole load: every tensor or array that would be
  materialised is charged *before* it is allocated, so claimed element counts cannot exceed the bytes
  actually in the file by more than a fixed factor.
* :func:`check_tree` bounds the nesting depth of the unpickled object graph and refuses cycles, so later
  recursive walks (attributes, ``state_dict``) cannot hit ``RecursionError``.
"""

from __future__ import annotations

import io
import pickletools
from collections.abc import Callable, Iterable
from typing import Any

from latentkit.errors import CheckpointError

__all__ = ["scan_opcodes", "LoadBudget", "check_tree", "lookup_global", "CALL_OPCODES", "DATA_OPCODES", "MAX_DEPTH", "MAX_OPCODES", "MAX_STACK"]

MAX_DEPTH = 100
"""Deepest container nesting accepted in a checkpoint (NVIDIA's pickles nest about 25 deep)."""

MAX_STACK = 50_000
"""Deepest unpickling stack accepted (NVIDIA's pickles stay under 300 entries; 1000-item batches need 2000)."""

MAX_OPCODES = 20_000_000
"""Opcodes accepted in one pickle (a 380 MB FFHQ snapshot has well under a million)."""

# Opcodes that build only plain data (no calls, no imports).
DATA_OPCODES = frozenset(
    """PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1
    LONG4 FLOAT BINFLOAT STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    BINBYTES SHORT_BINBYTES BINBYTES8 EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS
    EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET ADDITEMS FROZENSET PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET
    LONG_BINGET""".split()
)
# Opcodes that call an allow-listed global (checked again, by object type, while unpickling).
CALL_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "NEWOBJ"})
_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"})


def lookup_global(table: dict, module: str, name: str, *, what: str) -> Any:
    """The allow-listed stand-in for the global ``module.name`` in ``table``; Python 2 spellings (protocol
    0-2 files: ``__builtin__``, ``copy_reg``) are mapped first, as pickle's own ``find_class`` does.

    Raises:
        CheckpointError: naming the refused global and ``what`` the allow-list is for.
    """
    import _compat_pickle

    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    allowed = table.get((module, name))
    if allowed is None:
        raise CheckpointError(
            f"refused global {module}.{name}: it is not on latentkit's allow-list for {what} "
            "(the file may be malicious, or a format latentkit does not know)"
        )
    return allowed


def scan_opcodes(
    data: bytes,
    *,
    name: str,
    allowed: Iterable[str] = DATA_OPCODES | CALL_OPCODES,
    check_global: Callable[[str, str], None] | None = None,
    start: int = 0,
) -> int:
    """Refuse a pickle whose opcode stream leaves a small, known set; nothing is unpickled.

    Args:
        data: the pickle bytes (only the first pickle in ``data`` is scanned, up to its ``STOP``).
        name: the file, for messages.
        allowed: opcode names accepted.
        check_global: called with ``(module, name)`` of every ``GLOBAL`` opcode; raises to refuse it.
        start: offset of the pickle in ``data``.

    Returns:
        The offset just after the ``STOP`` opcode.

    Raises:
        CheckpointError: naming the opcode and its offset, or whatever ``check_global`` raises.
    """
    allowed = frozenset(allowed)
    count = depth = 0
    marks: list[int] = []
    try:
        stream = io.BytesIO(data)
        stream.seek(start)
        for count, (op, arg, pos) in enumerate(pickletools.genops(stream), start=1):
            if count > MAX_OPCODES:
                raise CheckpointError(f"{name}: more than {MAX_OPCODES:,} pickle opcodes; refused as hostile")
            if op.name not in allowed:
                raise CheckpointError(
                    f"{name}: pickle opcode {op.name} at byte {pos} is not allowed in a checkpoint "
                    "(the file may be malicious)"
                )
            if op.name in _MEMO_OPCODES and (not isinstance(arg, int) or not 0 <= arg <= count):
                raise CheckpointError(f"{name}: pickle memo index {arg!r:.20} at byte {pos} is out of range")
            if op.name == "MARK":
                marks.append(depth)
            else:  # the opcode's stack effect, as pickletools documents it
                if pickletools.markobject in op.stack_before:
                    if not marks:
                        raise CheckpointError(f"{name}: pickle opcode {op.name} at byte {pos} has no MARK")
                    depth = marks.pop() - op.stack_before.index(pickletools.markobject)
                else:
                    depth -= len(op.stack_before)
                depth += len(op.stack_after)
            if depth > MAX_STACK or len(marks) > MAX_STACK:
                raise CheckpointError(
                    f"{name}: the pickle stack grows past {MAX_STACK:,} entries at byte {pos} (nesting bomb); "
                    "refused as hostile"
                )
            if op.name == "GLOBAL" and check_global is not None:
                module, _, attr = str(arg).partition(" ")
                check_global(module, attr)
            if op.name == "STOP":
                return (pos or 0) + 1
    except CheckpointError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as err:
        # genops' own parse errors: truncated arguments, bad text numbers, non-ASCII ...
        raise CheckpointError(f"{name} is truncated or not a valid pickle ({type(err).__name__}: {err})") from err
    raise CheckpointError(f"{name} is truncated or not a valid pickle (no STOP opcode)")


class LoadBudget:
    """Bytes that one load may materialise, charged before each allocation.

    Args:
        file_bytes: size of the untrusted input; the budget is ``factor * file_bytes + slack``.
        name: the file, for messages.
        factor: how many times the file's size may be materialised (views of a storage, copies).
        slack: fixed allowance for tiny files, in bytes.
    """

    def __init__(self, file_bytes: int, *, name: str, factor: float = 2.0, slack: int = 16 << 20) -> None:
        self.limit = int(factor * file_bytes) + slack
        self.used = 0
        self.name = name

    def charge(self, nbytes: int, what: str) -> None:
        """Account ``nbytes`` for ``what``; raises :class:`CheckpointError` past the limit."""
        if not isinstance(nbytes, int) or nbytes < 0:
            raise CheckpointError(f"{self.name}: {what} has an invalid size")
        self.used += nbytes
        if self.used > self.limit:
            raise CheckpointError(
                f"{self.name}: {what} would need {nbytes:,} bytes, more than the file can hold "
                f"({self.used:,} bytes in all, budget {self.limit:,} for a file of this size); "
                "the file is corrupt or hostile"
            )


_ATOMS = (type(None), bool, int, float, complex, str, bytes)


def check_tree(root: Any, *, name: str, children: Callable[[Any], Iterable[Any] | None]) -> None:
    """Refuse object graphs nested deeper than :data:`MAX_DEPTH` or with cycles (iteratively, shared objects
    visited once).

    Args:
        root: the unpickled object.
        name: the file, for messages.
        children: returns an object's members (``None`` for a leaf); it raises to refuse a type.
    """
    height: dict[int, int] = {}  # id -> height of the finished subtree (ids stay valid: root keeps all alive)
    on_path: set[int] = set()
    stack: list[list] = []  # [node, members, position, height so far]

    def enter(node: Any) -> int | None:
        """Height of a leaf or finished node, else push it and return None."""
        if isinstance(node, _ATOMS):
            return 0
        key = id(node)
        if key in on_path:
            raise CheckpointError(f"{name}: the pickle holds a reference cycle; refused as hostile")
        if key in height:
            return height[key]
        kids = children(node)
        if kids is None:
            height[key] = 0
            return 0
        on_path.add(key)
        stack.append([node, list(kids), 0, 0])
        return None

    def check(level: int) -> None:
        if level > MAX_DEPTH:
            raise CheckpointError(f"{name}: objects nested more than {MAX_DEPTH} deep; refused as hostile")

    enter(root)
    while stack:
        frame = stack[-1]
        node, members = frame[0], frame[1]
        if frame[2] < len(members):
            kid = members[frame[2]]
            frame[2] += 1
            h = enter(kid)
            if h is not None:
                frame[3] = max(frame[3], h + 1)
                check(len(stack) + h)
            else:
                check(len(stack))
            continue
        stack.pop()
        on_path.discard(id(node))
        height[id(node)] = frame[3]
        if stack:
            stack[-1][3] = max(stack[-1][3], frame[3] + 1)
