"""Print the model-support table of the README (family × runner × method: honoured, composed, refused), decided
from the profile of each tiny checkpoint in harness.zoo. `longctx models check PATH` gives the reasons for one model.

    python scripts/model_support.py            # the table, as the README holds it (tests/runners/test_families.py
                                               # checks that the README's copy is current)
"""
from __future__ import annotations


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging

    logging.set_verbosity_error()
    from harness import zoo
    from harness.profile import probe_model
    from harness.support import support_table

    profiles = {f.name: probe_model(zoo.build(f, 512)) for f in zoo.FAMILIES}
    print(support_table(profiles))


if __name__ == "__main__":
    main()
