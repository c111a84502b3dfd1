"""NTK-by-parts (Peng et al. 2023, "YaRN", §3.2; bloc97's "NTK-by-parts" interpolation): YaRN's frequencies without
its attention temperature. Pairs that turn more than beta_fast times over the original context keep θ_i, pairs that
turn fewer than beta_slow times are divided by s, a linear ramp blends the band between (extensions/yarn.py has the
math). Expressed to transformers as rope_type "yarn" with attention_factor 1, so the two differ only by the
temperature: comparing them isolates what YaRN's temperature does.
"""
from __future__ import annotations

from dataclasses import dataclass

from extensions.yarn import Yarn, YarnConfig


@dataclass(frozen=True)
class NTKByPartsConfig(YarnConfig):
    def __post_init__(self):
        super().__post_init__()
        if self.attention_factor is not None:
            raise ValueError("ntk-by-parts has no attention temperature (that is yarn); drop attention_factor")

    @classmethod
    def allowed(cls) -> list[str]:
        return [n for n in super().allowed() if n != "attention_factor"]


class NTKByParts(Yarn):
    name = "ntk-by-parts"
    config_cls = NTKByPartsConfig

    def rope_parameters(self, config: NTKByPartsConfig, hf_config) -> dict:
        return {**super().rope_parameters(config, hf_config), "attention_factor": 1.0}

    def inv_freq(self, config: NTKByPartsConfig, hf_config, seq_len=None):
        inv_freq, _ = super().inv_freq(config, hf_config, seq_len)
        return inv_freq, 1.0
