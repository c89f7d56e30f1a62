"""The one place the pages branch on the model family (classifier or diffusion model).

Pages ask this module which methods and attacks to offer and whether they apply at all, so no
page carries its own ``if ddpm`` checks.
"""

from __future__ import annotations

import streamlit as st

from mu_core.case import Case

CLASSIFIER, DIFFUSION = "classifier", "diffusion"


@st.cache_data(show_spinner=False, max_entries=64)
def _family_of(path: str, sha256: str | None) -> str:
    from mu_core.models.ddpm import model_family
    from mu_core.models.io import read_record

    record = read_record(path)
    return model_family(record) if record is not None else CLASSIFIER


def case_family(case: Case | None) -> str:
    """The family of the case's original model (``classifier`` when there is none yet)."""
    if case is None or case.file("original") is None:
        return CLASSIFIER
    return _family_of(str(case.file("original")), (case.entry("original") or {}).get("sha256"))


def is_diffusion(case: Case | None) -> bool:
    return case_family(case) == DIFFUSION


def methods(case: Case | None) -> list[str]:
    """Unlearning methods for the case's model, without ``retrain`` (it has its own button)."""
    from mu_core.unlearn import list_methods

    return [m for m in list_methods(case_family(case)) if m != "retrain"]


def method(case: Case | None, name: str):
    """The method ``name`` for the case's model family."""
    from mu_core.unlearn import get_method

    return get_method(name, case_family(case))


def method_preset(case: Case | None, name: str, n_train: int | None) -> dict:
    from mu_core.unlearn import preset

    return preset(name, n_train, case_family(case))


def attacks(case: Case | None) -> tuple[list[str], list[str]]:
    """``(offered, default)`` attacks: a diffusion model gets the diffusion attacks (and the
    threshold attacks on its diffusion-classifier outputs); a classifier everything else."""
    from mu_core.attacks import DEFAULT_ATTACKS, list_attacks
    from mu_core.attacks.diffusion import DIFFUSION_ATTACKS

    diffusion_only = [*DIFFUSION_ATTACKS, "gsa1", "gsa2"]
    if is_diffusion(case):
        return diffusion_only + list(DEFAULT_ATTACKS), list(DIFFUSION_ATTACKS)
    return [a for a in list_attacks() if a not in diffusion_only], list(DEFAULT_ATTACKS)


def classifiers_only(case: Case | None, what: str) -> bool:
    """On a diffusion case, say plainly that ``what`` covers classifiers only and return ``True``
    (the page then stops)."""
    if not is_diffusion(case):
        return False
    st.info(f"{what} covers classifiers only; this case's model is a diffusion model (DDPM). "
            "Audit it on the Membership page and look at its samples on the Generate page.", icon=":material/info:")
    return True


def diffusion_only(case: Case | None, what: str) -> bool:
    """On a classifier case, say that ``what`` needs a diffusion model and return ``True``."""
    if is_diffusion(case):
        return False
    st.info(f"{what} needs a diffusion model: train one with the architecture **ddpm** on the Model page.", icon=":material/info:")
    return True


def model_note(case: Case | None) -> None:
    """What a diffusion model's accuracies mean."""
    if is_diffusion(case):
        st.caption("For a DDPM, accuracies are those of its diffusion classifier (the class whose conditional model "
                   "denoises the image best, Li et al. 2023), on at most 500 samples per set.")
