"""Task names → task classes (lazy)."""
from harness.registry import Registry

TASKS = Registry("task")
TASKS.register("passkey", "evals.passkey:PasskeyTask")
TASKS.register("needle", "evals.needle:NeedleInHaystackTask")
