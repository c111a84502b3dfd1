"""Task names → task classes (lazy)."""
from harness.registry import Registry

TASKS = Registry("task")
TASKS.register("passkey", "evals.passkey:PasskeyTask")
TASKS.register("needle", "evals.needle:NeedleInHaystackTask")
TASKS.register("niah-multikey", "evals.ruler:MultiKeyNeedle")
TASKS.register("niah-multivalue", "evals.ruler:MultiValueNeedle")
TASKS.register("niah-multiquery", "evals.ruler:MultiQueryNeedle")
TASKS.register("kv", "evals.kv:KeyValueTask")
TASKS.register("phonebook", "evals.phonebook:PhonebookTask")
TASKS.register("vt", "evals.vt:VariableTracking")
