"""Hypothesis over the real processes: a state machine whose rules are the controller's choices.

Each example starts the real daemon on a fresh store (a `Session`), and each step lets
Hypothesis pick one of the controller's current choices (which paused process goes on,
and how virtual time moves). Every transition is refinement-checked against the model
(refinement.py); the model's safety properties are checked on every state, and
``deadlock_free`` is an invariant: a model deadlock state is confirmed on the real
processes (each can only poll) and fails the example. Hypothesis shrinks failures over
the choices, i.e. over the actions and their interleaving together; every failure is
saved as an ITF trace whose ``#meta`` holds the schedule, so the last one written is
the shrunk one.

Subclass for your own scenario::

    class MyMachine(RefinementMachine):
        scenario = "specs/scenarios/fan-in.toml"   # a path, a built-in name or a Scenario
        model_policy = "guix"
        impl_policy = "guix"                        # default: the model's policy
        bugs = ("Z10",)                             # historical bugs switched on in the daemon
        trace_dir = "/tmp/traces"
        model_shrink = True                         # see below

    TestMine = MyMachine.TestCase

With ``model_shrink``, a deadlock is also shrunk by the model (shrink.py): the explicit
engine's shortest trace to a deadlock of the same wait-for shape, replayed on fresh real
processes to confirm it, is saved as the failure's ITF trace instead of the schedule
Hypothesis found (kept in ``#meta.model_guided.found_schedule``); ``shrunk`` holds it.
One explicit search and one replay per shape and class, however many examples fail.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lockstep.harness.refinement import SAFETY, DeadlockFound, RefinementError, Session, save_trace
from lockstep.harness.shrink import (
    ModelShrunk,
    Shape,
    ShrinkError,
    save_shrunk,
    shrink_deadlock,
    wait_shape,
)
from lockstep.model import Model, Scenario, find_scenario, load_scenario


def resolve_scenario(spec: str | Scenario) -> Scenario:
    if isinstance(spec, Scenario):
        return spec
    return load_scenario(spec) if os.path.exists(spec) else find_scenario(spec)


class RefinementMachine(RuleBasedStateMachine):
    scenario: ClassVar[str | Scenario] = "seed"
    model_policy: ClassVar[str] = "guix"
    impl_policy: ClassVar[str | None] = None
    bugs: ClassVar[tuple[str, ...]] = ()
    faults: ClassVar[bool] = False
    properties: ClassVar[tuple[str, ...]] = SAFETY
    trace_dir: ClassVar[str | None] = None
    model_shrink: ClassVar[bool] = False
    # Every failure seen, in order; Hypothesis replays the shrunk example last.
    failures: ClassVar[list[RefinementError | DeadlockFound]]
    # model_shrink: the confirmed model-minimal deadlock per wait-for shape.
    shrunk: ClassVar[dict[Shape, ModelShrunk]]
    shrink_errors: ClassVar[list[ShrinkError]]  # model traces the real processes did not follow

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        if "failures" not in cls.__dict__:
            cls.failures = []
        if "shrunk" not in cls.__dict__:
            cls.shrunk = {}
            cls.shrink_errors = []
        model = Model(resolve_scenario(cls.scenario), cls.model_policy, faults=cls.faults)
        self.session = Session(model, cls.impl_policy, cls.bugs, cls.properties)
        try:
            self.session.start()
        except BaseException as e:
            self.session.stop()
            self._record(e)
            raise

    def _record(self, e: BaseException) -> None:
        if not isinstance(e, RefinementError | DeadlockFound):
            return
        cls = type(self)
        cls.failures.append(e)
        shrunk = None
        if isinstance(e, DeadlockFound) and cls.model_shrink:
            m = self.session.model
            shape = wait_shape(m, e.trace.last)
            if shape not in cls.shrunk:
                try:
                    cls.shrunk[shape] = shrink_deadlock(e, m, self.session.run.policy, self.bugs)
                except ShrinkError as err:  # the found failure stands, saved as found
                    cls.shrink_errors.append(err)
            shrunk = cls.shrunk.get(shape)
        if self.trace_dir is not None:
            m = self.session.model
            name = (f"{m.scenario.name}.{m.policy}.impl-{self.session.run.policy}."
                    f"{e.prop.replace(':', '-')}.itf.json")
            Path(self.trace_dir).mkdir(parents=True, exist_ok=True)
            if shrunk is not None:
                save_shrunk(shrunk, Path(self.trace_dir) / name, self.session.run.policy, self.bugs)
            else:
                save_trace(e.trace, Path(self.trace_dir) / name, e.schedule, self.session.run.policy, self.bugs)

    def _guarded(self, fn: Any) -> None:
        try:
            fn()
        except (RefinementError, DeadlockFound) as e:
            self._record(e)
            raise

    @precondition(lambda self: not self.session.finished)
    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        opts = self.session.options()
        choice = opts[data.draw(st.integers(0, len(opts) - 1), label="choice")]
        self._guarded(lambda: self.session.choose(choice))

    @precondition(lambda self: self.session.finished)
    @rule()
    def finished(self) -> None:
        """Every request has returned: nothing left to choose."""

    @invariant()
    def deadlock_free(self) -> None:
        if self.session.deadlocked():
            self._guarded(self.session.confirm_deadlock)

    def teardown(self) -> None:
        self.session.stop()
