"""Views of model states for people: one step in full, and the wait-for graph as dot."""

from __future__ import annotations

from ..model import Model, State
from ..model.trace import Trace


def render_state(model: Model, trace: Trace, step: int) -> str:
    s = trace.states[step]
    view = model.describe(s)
    lines = [f"Step {step} of {len(trace)}: scenario {model.scenario.name}, policy {model.policy}"]
    if step:
        a = trace.actions[step - 1]
        lines.append(f"  action: {a}")
        lines.append(f"          {a.daemon}")
    for name, proc in view["procs"].items():
        lines.append(f"  {name} [{proc['status']}]")
        for d, st in proc["goals"].items():
            waits = proc["waits"].get(d)
            lines.append(f"      goal {d:14s} {st}" + (f"  waits on {', '.join(waits)}" if waits else ""))
        for o, st in proc["substitutions"].items():
            lines.append(f"      subst {o:13s} {st}")
    lines.append("  locks: " + (", ".join(f"{o}: P{h['proc']} {h['holder']}" for o, h in view["locks"].items())
                                or "none held"))
    lines.append("  valid: " + (", ".join(view["valid"]) or "none"))
    wf = model.wait_for(s)
    lines.append("  wait-for: " + (", ".join(f"P{a} -> P{b} ({o})" for a, b, o in wf.edges) or "none"))
    cyc = wf.cycle()
    if cyc:
        lines.append("  cycle: " + " -> ".join(f"P{p}" for p in cyc + (cyc[0],)))
    if model.is_deadlock(s):
        lines.append("  DEADLOCK: only failed lock attempts are enabled")
    enabled = [a for a in model.enabled(s)]
    lines.append("  enabled: " + (", ".join(str(a) for a in enabled) or "nothing"))
    return "\n".join(lines) + "\n"


def wait_for_dot(model: Model, s: State) -> str:
    wf = model.wait_for(s)
    cyc = set(wf.cycle() or ())
    lines = ["digraph waitfor {", "  rankdir=LR;"]
    for p in range(1, len(model.scenario.processes) + 1):
        held = [o for o, h in model.describe(s)["locks"].items() if h["proc"] == p]
        label = f"P{p}" + (f"\\nholds {', '.join(held)}" if held else "")
        style = ", color=red" if p in cyc else ""
        lines.append(f'  P{p} [label="{label}"{style}];')
    for a, b, o in wf.edges:
        style = ", color=red" if a in cyc and b in cyc else ""
        lines.append(f'  P{a} -> P{b} [label="{o}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"
