"""The registries' names, for answers that must come before torch is imported.

``python -m mu_core list`` prints these. Importing the registries themselves costs torch's import
and more (seconds of CPU on a small machine) only to print names, so the names are kept here too;
``tests/mu_core/test_cli.py`` checks that they match the registries exactly (same names, same
order), so a method, attack or threat added to its registry fails the tests until it is named here.
"""

from __future__ import annotations

__all__ = ["CATALOG"]

#: ``heading -> names``, in the order ``list`` prints them.
CATALOG: dict[str, tuple[str, ...]] = {
    "datasets": ("digits", "cifar10", "fashion-mnist", "imagefolder", "mnist"),
    "architectures": ("mlp", "cnn", "resnet18", "resnet18_small", "ddpm"),
    "methods": ("retrain", "finetune", "neggrad", "erasediff", "neggrad_plus", "random_label", "salun", "l1_sparse",
                "boundary_shrink", "boundary_expand", "sisa", "scrub", "bad_teacher", "ssd", "fisher", "influence", "unsir"),
    "attacks": ("loss", "confidence", "entropy", "modified_entropy", "correctness", "svc_efficacy", "deletion_inference",
                "label_only", "shadow", "gradient_norm", "lira_online", "lira_offline", "rmia_online", "rmia_offline", "ulira",
                "kaggle_epsilon", "diffusion_loss", "secmi", "pia", "score_norm", "gsa1", "gsa2"),
    "threats": ("targeted_request", "accuracy_burn", "over_unlearning", "backdoor_verify", "backdoor_removal",
                "verification_evasion"),
}
