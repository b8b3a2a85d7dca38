"""Counterexample traces: ITF JSON on disk, numbered steps for people.

A trace is the sequence of states from the initial state and the action taken
into each. On disk it is an Informal Trace Format document (the format of
Apalache and Quint): one ITF state per step with the structured view of the
model state (`procs`, `locks`, `valid`), the action taken as
`mbt::actionTaken` and its parameters as `mbt::nondetPicks`. Loading a trace
replays its actions through the model and checks every recorded state, so a
trace that no longer fits the model is rejected, naming the first step that
differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .actions import Action, action_from_json

if TYPE_CHECKING:
    from .machine import Model, State

ITF_DESCRIPTION = "https://apalache-mc.org/docs/adr/015adr-trace.html"


def to_itf_value(v: Any) -> Any:
    if isinstance(v, bool) or isinstance(v, str):
        return v
    if isinstance(v, int):
        return {"#bigint": str(v)}
    if isinstance(v, dict):
        return {str(k): to_itf_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [to_itf_value(x) for x in v]
    raise TypeError(f"cannot encode {v!r} in ITF")


def from_itf_value(v: Any) -> Any:
    if isinstance(v, dict):
        if "#bigint" in v:
            return int(v["#bigint"])
        if "#set" in v:
            return [from_itf_value(x) for x in v["#set"]]
        if "#tup" in v:
            return [from_itf_value(x) for x in v["#tup"]]
        if "#map" in v:
            return {from_itf_value(k): from_itf_value(x) for k, x in v["#map"]}
        return {k: from_itf_value(x) for k, x in v.items() if k != "#meta"}
    if isinstance(v, list):
        return [from_itf_value(x) for x in v]
    return v


@dataclass
class Trace:
    model: Model
    states: list[State]
    actions: list[Action]  # actions[i] leads from states[i] to states[i + 1]
    prop: str | None = None

    def __len__(self) -> int:
        """The number of steps (actions)."""
        return len(self.actions)

    @property
    def last(self) -> State:
        return self.states[-1]

    # -- ITF ----------------------------------------------------------------------

    def to_itf(self) -> dict[str, Any]:
        m = self.model
        states = []
        for i, s in enumerate(self.states):
            view = m.describe(s)
            act = self.actions[i - 1] if i else None
            picks = {k: v for k, v in act.to_json().items() if k != "kind"} if act else {}
            states.append({
                "#meta": {"index": i},
                "procs": to_itf_value(view["procs"]),
                "locks": to_itf_value(view["locks"]),
                "valid": {"#set": view["valid"]},
                "mbt::actionTaken": act.kind if act else "init",
                "mbt::nondetPicks": to_itf_value(picks),
            })
        return {
            "#meta": {
                "format": "ITF",
                "format-description": ITF_DESCRIPTION,
                "source": "lockstep",
                "scenario": m.scenario.name,
                "policy": m.policy,
                "variants": sorted(m.variants),
                "property": self.prop,
                "description": f"{self.prop or 'trace'} on scenario {m.scenario.name} under policy {m.policy}",
            },
            "params": [],
            "vars": ["procs", "locks", "valid", "mbt::actionTaken", "mbt::nondetPicks"],
            "states": states,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_itf(), indent=1) + "\n")

    # -- for people ---------------------------------------------------------------

    def render(self, final_note: str | None = None) -> str:
        m = self.model
        lay = m.layout
        lines = [f"Trace of {len(self)} steps: scenario {m.scenario.name}, policy {m.policy}"
                 + (f", property {self.prop}" if self.prop else "")]
        lines.append("  0  init")
        for p, proc in enumerate(m.scenario.processes):
            lines.append(f"       P{p + 1} requests {', '.join(proc.request)} "
                         f"(max_jobs {proc.max_jobs}{', keep_going' if proc.keep_going else ''})")
        for i, a in enumerate(self.actions, 1):
            pre, post = self.states[i - 1], self.states[i]
            lines.append(f"{i:3d}  P{a.proc} {a.kind}({_args(a)})")
            for j, (x, y) in enumerate(zip(pre, post, strict=True)):
                if x != y:
                    lines.append(f"       {lay.names[j]}: {lay.render(j, x)} -> {lay.render(j, y)}")
        lines.append(_locks_line(m, self.last))
        wf = m.wait_for(self.last)
        if wf.edges:
            lines.append("     wait-for: " + ", ".join(f"P{a} -> P{b} ({o})" for a, b, o in wf.edges))
            cyc = wf.cycle()
            if cyc:
                lines.append("     cycle: " + " -> ".join(f"P{p}" for p in cyc + (cyc[0],)))
        if m.is_deadlock(self.last):
            lines.append("     final state: deadlock (only failed lock attempts are enabled)")
        if final_note:
            lines.append(f"     {final_note}")
        return "\n".join(lines) + "\n"


def _args(a: Action) -> str:
    return ", ".join(str(v) for k, v in a.to_json().items() if k not in ("kind", "proc"))


def _locks_line(m: Model, s: State) -> str:
    view = m.describe(s)
    locks = ", ".join(f"{o}: P{h['proc']} {h['holder']}" for o, h in view["locks"].items()) or "none held"
    valid = ", ".join(view["valid"]) or "none"
    return f"     locks: {locks}\n     valid: {valid}"


class TraceError(ValueError):
    """A trace file that is malformed or does not replay through the model."""


def load_itf(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise TraceError(f"trace file {str(p)!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise TraceError(f"trace file {str(p)!r}: not JSON ({e}); give an ITF trace written by lockstep") from None
    if not isinstance(data, dict) or not isinstance(data.get("states"), list) or not data["states"]:
        raise TraceError(f"trace file {str(p)!r}: no 'states' list; an ITF trace has one state per step")
    return data


def actions_of(data: dict[str, Any]) -> list[Action]:
    out = []
    for i, st in enumerate(data["states"][1:], 1):
        kind = st.get("mbt::actionTaken")
        picks = from_itf_value(st.get("mbt::nondetPicks", {}))
        try:
            out.append(action_from_json({"kind": kind, **picks}))
        except ValueError as e:
            raise TraceError(f"trace step {i}: {e}") from None
    return out


def replay(model: Model, data: dict[str, Any]) -> Trace:
    """Replay an ITF trace's actions through `model`, checking each recorded state as it goes."""
    acts = actions_of(data)
    recorded = data["states"]
    if len(recorded) != len(acts) + 1:
        raise TraceError(f"trace has {len(recorded)} states for {len(acts)} actions")
    states = [model.init_state()]
    for i in range(len(acts) + 1):
        if i:
            nxt = model.next_state(states[-1], acts[i - 1])
            if nxt is None:
                raise TraceError(f"trace step {i}: action {acts[i - 1]} is not enabled in the model "
                                 f"(scenario {model.scenario.name}, policy {model.policy})")
            states.append(nxt)
        view = model.describe(states[i])
        got = {k: from_itf_value(recorded[i].get(k)) for k in ("procs", "locks", "valid")}
        if got != {"procs": view["procs"], "locks": view["locks"], "valid": view["valid"]}:
            raise TraceError(f"trace step {i}: recorded state differs from the model's state")
    meta = data.get("#meta", {})
    return Trace(model, states, acts, meta.get("property"))
