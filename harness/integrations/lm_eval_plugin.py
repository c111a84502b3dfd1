"""Make `lm_eval --model longctx` work: lm-eval 0.4 finds models only in its own lazy table, which it fills when
`lm_eval.models` is imported, and it has no plugin entry points. `longctx lm-eval-register` writes a one-line .pth
file into site-packages that imports this module at interpreter start; this module only installs an import hook
(no heavy imports) that adds our lazy entry right after lm-eval builds its table.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

TARGET = "lm_eval.models"
ENTRY = ("longctx", "harness.integrations.lm_eval_model:LongctxLM")
PTH_NAME = "longctx_lm_eval.pth"


def _register() -> None:
    from lm_eval.api.registry import model_registry

    if ENTRY[0] not in model_registry:
        model_registry.register(ENTRY[0], target=ENTRY[1])


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        inner = spec.loader.exec_module

        def exec_module(module):
            inner(module)
            _register()

        spec.loader.exec_module = exec_module
        return spec


def install_hook() -> None:
    if TARGET in sys.modules:  # lm-eval already loaded its table
        _register()
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def write_pth() -> Path:
    """Write the .pth into this interpreter's site-packages (idempotent). Returns its path."""
    import site
    import sysconfig

    purelib = Path(sysconfig.get_paths()["purelib"])
    target = purelib if purelib.exists() else Path(site.getsitepackages()[0])
    pth = target / PTH_NAME
    line = "import harness.integrations.lm_eval_plugin as _p; _p.install_hook()\n"
    if not pth.exists() or pth.read_text() != line:
        pth.write_text(line)
    return pth
