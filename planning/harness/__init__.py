"""The simulator harness: wm-eval (:mod:`~planning.harness.evaluate`), wm-demo
(:mod:`~planning.harness.demo`), their agents and the tuned planning settings they share
(defined once in :mod:`~planning.harness.agents`), the simulator oracle, results and videos."""

from planning.harness.agents import (
    ENERGY_VIEWS,
    GRIPPER_EFFORT,
    GRIPPER_EXECUTION,
    SUBGOAL_BUDGETS,
)

__all__ = ["ENERGY_VIEWS", "GRIPPER_EFFORT", "GRIPPER_EXECUTION", "SUBGOAL_BUDGETS"]
