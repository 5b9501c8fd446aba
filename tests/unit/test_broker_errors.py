"""errors.py draws its exception tree in its docstring: the drawing and the classes agree."""

from __future__ import annotations

import inspect
import re

from killb_broker import errors

# "├── Name   note" / "│   └── Name  note": the depth is where the name starts, in steps of 4.
_ENTRY = re.compile(r"^(?P<indent>[│ ]*)[├└]── (?P<name>\w+)")


def drawn_parents() -> dict[str, str]:
    """Each class of the drawing, with the class it is drawn under."""
    lines = (errors.__doc__ or "").splitlines()
    root = next(line for line in lines if line.strip() == "BrokerError")
    parents, stack = {}, [root.strip()]
    for line in lines[lines.index(root) + 1 :]:
        entry = _ENTRY.match(line)
        if entry is None:
            break
        depth = len(entry["indent"]) // 4 + 1
        del stack[depth:]
        parents[entry["name"]] = stack[-1]
        stack.append(entry["name"])
    return parents


def defined_parents() -> dict[str, str]:
    return {
        name: cls.__bases__[0].__name__
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.BrokerError) and cls is not errors.BrokerError
    }


def test_the_drawn_tree_lists_every_error_class_under_its_parent() -> None:
    assert drawn_parents() == defined_parents()
