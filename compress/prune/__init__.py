"""Structured pruning of a FaceMobileNet to a channel schedule (`compress prune --schedule table3`).

plan.py validates a target schedule against the model's and maps stages/blocks (depth pruning);
surgery.py chooses channels by importance through the coupled channel groups, residual (b) split/shuffle
included, and copies the kept weights into a network built from the target schedule. Two layers, named the
same way in prune, quantize and export: in_memory.py works on models in memory (the one-shot, iterative and
uniform-ratio entry points), folders.py on artifact folders (`compress prune`).
"""

from .in_memory import (describe_pruning, prune_by_ratio, prune_plan_for, prune_to_schedule, ratio_schedule,
                  rounding_report, schedule_macs)
from .importance import CRITERIA
from .plan import PrunePlan, block_specs, format_plan, plan_pruning, round_schedule
from .surgery import Selection, apply_selection, select_channels, zero_pruned_channels

__all__ = ["CRITERIA", "PrunePlan", "Selection", "apply_selection", "block_specs", "describe_pruning",
           "format_plan", "plan_pruning", "prune_by_ratio", "prune_plan_for", "prune_to_schedule",
           "ratio_schedule", "round_schedule", "rounding_report", "schedule_macs", "select_channels",
           "zero_pruned_channels"]
