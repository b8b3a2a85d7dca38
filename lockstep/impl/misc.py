"""Graph helpers over store paths (Guix misc.cc) and the store's base error."""

from __future__ import annotations

from collections.abc import Iterator


class StoreError(Exception):
    """A store operation refused: the message names the object, the rule and the fix."""


class ReferenceCycleError(StoreError):
    pass


def topo_sort_paths(refs: dict[str, frozenset[str]]) -> list[str]:
    """Paths of `refs` with every path after the paths it refers to; self-references
    ignored. Raises ReferenceCycleError naming the cycle."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current DFS path, 2: done
    for start in sorted(refs):
        stack: list[tuple[str, Iterator[str]]] = []
        if state.get(start):
            continue
        state[start] = 1
        stack.append((start, iter(sorted(refs[start]))))
        while stack:
            path, it = stack[-1]
            nxt = next((r for r in it if r != path and r in refs), None)
            if nxt is None:
                stack.pop()
                state[path] = 2
                order.append(path)
            elif state.get(nxt) == 1:
                cycle = [p for p, _ in stack][[p for p, _ in stack].index(nxt):] + [nxt]
                raise ReferenceCycleError(
                    "cycle detected in the references of " + " -> ".join(repr(p) for p in cycle)
                    + "; store paths may refer to themselves but not to each other in a circle, "
                    "so remove one of these references; nothing was registered"
                )
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(sorted(refs[nxt]))))
    return order
