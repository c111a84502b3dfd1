"""Task names → task classes (lazy). A new task is its module and one line here (or one `TASKS.register` call
in the user's own code); the task list, presets, CLI help and lm-eval's glue all read this registry.

Variants are presets of a registered task (`PRESETS` on its class, e.g. "niah-multikey-words"); they are accepted
wherever a task name is."""
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
TASKS.register("mqar", "evals.mqar:MultiQueryRecall")
TASKS.register("cwe", "evals.aggregation:CommonWords")
TASKS.register("fwe", "evals.aggregation:FrequentWords")
TASKS.register("qa", "evals.qa:QATask")
TASKS.register("perplexity", "evals.perplexity:PerplexityTask")


def presets() -> dict[str, str]:
    """Preset name → the registered task that owns it."""
    return {preset: name for name in TASKS.names() for preset in getattr(TASKS.get(name), "PRESETS", {})}


def task_names() -> list[str]:
    return sorted(set(TASKS.names()) | set(presets()))


def config_class(name: str) -> type:
    """The config dataclass of a task or preset (what its experiment-file entry and --dump-config hold)."""
    owner = name if name in TASKS else presets().get(name)
    if owner is None:
        from harness.errors import unknown_name

        raise unknown_name("task", name, task_names())
    return TASKS.get(owner).config_cls


def make_config(name: str, values: dict, where: str = "", known_only: bool = False):
    """A task's config from a mapping of its settings (keys and types checked, one line naming `where` + key);
    `known_only`: the settings the task's config does not have are left out (a caller offering every task the
    same values, such as lm-eval's glue)."""
    from harness.config import build_config, settings_of

    cls = config_class(name)
    if known_only:
        values = {k: v for k, v in values.items() if k in settings_of(cls)}
    return build_config(cls, values, where)


def make_task(name: str, config):
    """Instantiate a task by registered name or preset name."""
    if name in TASKS:
        return TASKS.get(name)(config)
    owner = presets().get(name)
    if owner is not None:
        return TASKS.get(owner).from_preset(name, config)
    from harness.errors import unknown_name

    raise unknown_name("task", name, task_names())
