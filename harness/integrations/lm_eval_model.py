"""The `longctx` model for lm-eval: our runners and extensions behind lm-eval's `LM` interface.

    lm_eval --model longctx --model_args model=smollm2,extension=yarn,factor=2,runner=hf --tasks ...

Any model_args key that is not a runner or model option is an extension parameter (factor, beta_fast, window ...).
Importing this module registers the model; `harness.integrations.lm_eval_plugin` arranges that for the `lm_eval`
command. All three request types are implemented on the runner's own primitives:
  generate_until         greedy decoding (`Runner.generate`), cut at the first stop string;
  loglikelihood          per-token NLL of context + continuation in one forward (`token_nll`), summed over the
                         continuation; is_greedy compares each continuation token with the argmax;
  loglikelihood_rolling  NLL of every token of the text, the first one conditioned on BOS (else EOS).
"""
from __future__ import annotations

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from harness.config import parse_value

RUNNER_KEYS = ("runner", "dtype", "device")
IGNORED = ("batch_size", "max_batch_size")  # lm-eval passes these; our runners batch on their own terms


def _usable_device(device):
    """lm-eval passes device="cuda" by default; on a machine without CUDA, let the runner pick (CPU)."""
    if device in ("", None):
        return None
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
    return device


@register_model("longctx")
class LongctxLM(LM):
    def __init__(self, model: str = "smollm2", extension: str = "none", runner: str = "hf", dtype=None,
                 device=None, **kwargs):
        super().__init__()
        from harness.errors import UserError
        from harness.runners import RUNNERS

        try:  # every mistake in --model_args is one line and exit 2 (lm-eval would print a traceback)
            options = self._check(model, extension, runner, dtype, device, kwargs)
        except (UserError, ValueError, TypeError) as e:
            import sys

            print(f"longctx: error: --model_args: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        self.runner = RUNNERS.get(runner)(**options)
        self.info = self.runner.load(self.model_ref.path, self.extension, self.extension_config)
        self.name = f"longctx:{model}:{self.extension.describe(self.extension_config)}:{runner}"

    def _check(self, model, extension, runner, dtype, device, kwargs):
        """Resolve and check everything --model_args says, before any weight is loaded."""
        from extensions import EXTENSIONS
        from harness.experiment import load_tokenizer_and_config
        from harness.models import resolve_model
        from harness.runners import RUNNERS, check_hostable, check_runner_options

        params = {k: parse_value(str(v)) for k, v in kwargs.items() if k not in IGNORED and v is not None}
        ext_cls = EXTENSIONS.get(extension)
        RUNNERS.get(runner)
        options = {k: v for k, v in {"dtype": dtype, "device": _usable_device(device)}.items() if v is not None}
        check_runner_options(runner, options)
        check_hostable(runner, extension, options)
        self.extension = ext_cls()
        try:
            config = self.extension.parse(params)
        except ValueError as e:
            raise ValueError(f"extension {extension}: {e} (model_args keys other than {', '.join(RUNNER_KEYS)} "
                             "and model, extension are extension parameters)") from None
        self.model_ref = resolve_model(str(model))
        self.tokenizer, hf_config = load_tokenizer_and_config(self.model_ref.path)
        from harness.profile import read_profile
        from harness.support import require

        require(read_profile(hf_config), self.extension, config, RUNNERS.get(runner), options)  # as every command
        self.extension_config = self.extension.resolve(config, hf_config)
        return options

    # ------------------------------------------------------------------------------------------------ generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from harness.runners.base import GenerationRequest

        out = []
        for req in requests:
            context, gen_kwargs = req.args
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(gen_kwargs.get("max_gen_toks", 32))
            (g,) = self.runner.generate([GenerationRequest(context, max_new)])
            text = g.text
            for stop in until:
                if stop and stop in text:
                    text = text[: text.index(stop)]
            out.append(text)
            self.cache_hook.add_partial("generate_until", req.args, text)
        return out

    # ---------------------------------------------------------------------------------------------- likelihoods
    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _prefix(self) -> list[int]:
        """The token an empty context is conditioned on: BOS, else EOS (lm-eval's HF model does the same)."""
        for tid in (self.tokenizer.bos_token_id, self.tokenizer.eos_token_id):
            if tid is not None:
                return [tid]
        return [0]

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        import torch

        out = []
        for req in requests:
            context, continuation = req.args
            # A trailing space of the context belongs to the continuation's first token.
            n_space = len(context) - len(context.rstrip(" "))
            context, continuation = context[: len(context) - n_space], context[len(context) - n_space:] + continuation
            whole = self._ids(context + continuation)
            ctx = self._ids(context) if context else []
            if not ctx:
                ctx, whole = self._prefix(), self._prefix() + whole
            n_cont = len(whole) - len(ctx)
            ids = torch.tensor([whole])
            nll, greedy = self._nll_and_greedy(ids)
            cont_nll = nll[-n_cont:]
            out.append((-float(cont_nll.sum()), bool(greedy[-n_cont:].all())))
            self.cache_hook.add_partial("loglikelihood", req.args, out[-1])
        return out

    def _nll_and_greedy(self, ids):
        """Per-token NLL (T − 1,) and whether each token is the argmax (T − 1,), from one pass."""
        self._require_scoring()
        return self.runner.token_nll(ids, return_greedy=True)

    def _require_scoring(self) -> None:
        if not self.runner.capabilities.scores_tokens:
            raise NotImplementedError(f"runner {self.runner.name!r} cannot score tokens (loglikelihood); "
                                      "use runner=hf or runner=mamba for likelihood tasks")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        import torch

        self._require_scoring()
        out = []
        for req in requests:
            (text,) = req.args
            ids = torch.tensor([self._prefix() + self._ids(text)])
            out.append(-float(self.runner.token_nll(ids).sum()))
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, out[-1])
        return out

    def get_model_info(self) -> dict:
        return {"longctx_model": self.model_ref.name, "longctx_extension": self.extension.name,
                "longctx_extension_params": self.extension_config.params(), "longctx_dtype": self.info.dtype}
