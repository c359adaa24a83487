"""The simulator harness: wm-eval (:mod:`~planning.harness.evaluate`), wm-demo
(:mod:`~planning.harness.demo`), their agents and the tuned planning settings they share
(defined once in :mod:`~planning.harness.agents`; the gripper effort and wm_pcem's CEM in
:mod:`planning.planners`), the simulator oracle, results and videos."""

from planning.harness.agents import ENERGY_VIEWS, GRIPPER_EXECUTION, SUBGOAL_BUDGETS
from planning.planners import GRIPPER_EFFORT

__all__ = ["ENERGY_VIEWS", "GRIPPER_EFFORT", "GRIPPER_EXECUTION", "SUBGOAL_BUDGETS"]
