"""Goal-image planning over any :class:`LatentDynamics`: planners (CEM, iCEM, the published
reference), energies, the MPC loop; robots and the policy server in ``planning.robots`` and
``planning.server``; the simulator harness (wm-eval, wm-demo) in ``planning.harness``."""

from planning.mpc import MPCConfig, MPCController, StepInfo
from planning.planners import CEMConfig, ICEMConfig, make_planner
from planning.protocol import (
    ActionLayout,
    EnergyFn,
    LatentDynamics,
    Planner,
    PlanResult,
    final_step_l1_energy,
    token_weighted_l1_energy,
)

__all__ = [
    "ActionLayout", "CEMConfig", "EnergyFn", "ICEMConfig", "LatentDynamics", "MPCConfig",
    "MPCController", "PlanResult", "Planner", "StepInfo", "final_step_l1_energy", "make_planner",
    "token_weighted_l1_energy",
]  # fmt: skip
