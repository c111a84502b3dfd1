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

# Variants are presets of a registered task (e.g. "niah-multikey-words"); they are accepted wherever a task name is.
PRESET_OWNERS = ("niah-multikey", "niah-multivalue", "niah-multiquery", "vt")


def task_names() -> list[str]:
    names = set(TASKS.names())
    for owner in PRESET_OWNERS:
        names |= set(getattr(TASKS.get(owner), "PRESETS", {}))
    return sorted(names)


def make_task(name: str, config):
    """Instantiate a task by registered name or preset name."""
    if name in TASKS:
        return TASKS.get(name)(config)
    for owner in PRESET_OWNERS:
        cls = TASKS.get(owner)
        if name in getattr(cls, "PRESETS", {}):
            return cls.from_preset(name, config)
    from harness.errors import unknown_name

    raise unknown_name("task", name, task_names())
