"""MU Audit's engine: train, forget, unlearn and audit PyTorch image classifiers.

The public API is listed in ``__all__``; names are imported on first use, so ``import mu_core``
is fast and does not load torch until a torch-backed name is touched.

>>> import mu_core
>>> model, record = mu_core.fit_model("digits", "cnn")        # doctest: +SKIP
>>> req = mu_core.random_request(record.train_indices, 50)    # doctest: +SKIP
>>> result = mu_core.unlearn(model, record, req.indices, method="neggrad")  # doctest: +SKIP
"""

from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # errors and cases (no torch)
    "AuditInputError": "errors",
    "RunCancelled": "errors",
    "Case": "case",
    "CaseStore": "case",
    "audit_home": "case",
    "clean_name": "case",
    # safety: the launcher's listen address, data folders a file cannot choose
    "serve_command": "serve",
    "auth_configured": "serve",
    "trusted_root": "data",
    # data
    "Dataset": "data",
    "DatasetSpec": "data",
    "list_datasets": "data",
    "load_dataset": "data",
    # models
    "ModelRecord": "models",
    "build_model": "models",
    "list_archs": "models",
    "load_model": "models",
    "save_model": "models",
    "sha256_file": "models",
    # training
    "TrainConfig": "train",
    "accuracy": "train",
    "default_config": "train",
    "fit_model": "train",
    "pick_device": "device",
    # forget requests
    "ForgetRequest": "forget",
    "class_request": "forget",
    "explicit_request": "forget",
    "random_request": "forget",
    "read_request": "forget",
    "write_request": "forget",
    # unlearning
    "UnlearnResult": "unlearn",
    "get_method": "unlearn",
    "list_methods": "unlearn",
    "unlearn": "unlearn",
    # attacks and audit
    "get_attack": "attacks",
    "list_attacks": "attacks",
    "AuditReport": "audit.report",
    "RocResult": "audit.metrics",
    "roc_from_scores": "audit.metrics",
    "run_audit": "audit.report",
    "tpr_at_fpr": "audit.metrics",
    "epsilon_lower_bound": "audit.metrics",
    "judge": "audit.verdict",
    "train_retrains": "audit.retrains",
    "calibrate": "audit.calibration",
    "run_demo": "demo",
    # case workflow
    "case_audit": "workflow",
    "case_invert": "workflow",
    "InversionConfig": "inversion",
    "InversionResult": "inversion",
    "invert": "inversion",
    "infer_labels": "inversion",
    "defense_sweep": "inversion",
    "case_import_model": "workflow",
    "case_retrain": "workflow",
    "case_set_forget": "workflow",
    "case_train": "workflow",
    "case_unlearn": "workflow",
    "make_demo_case": "workflow",
    "case_utility": "workflow",
    "case_compare": "workflow",
    "case_explain": "workflow",
    "explain_models": "neurons",
    "case_use_method": "workflow",
    "compare_methods": "compare",
    "fit_sisa": "train",
    "case_forget_request": "workflow",
    "load_case_model": "workflow",
    "JobManager": "jobs",
    # threats lab
    "ScreenResult": "threats.screen",
    "ThreatResult": "threats",
    "case_screen": "threats.workflow",
    "case_threat": "threats.workflow",
    "get_threat": "threats",
    "list_threats": "threats",
    "run_threat": "threats",
    "screen_request": "threats.screen",
    "DEFAULT_ATTACKS": "attacks",
    # reports and evidence
    "build_report": "report",
    "check_record": "report",
    "generate_keypair": "report",
    "purge_case": "report",
    "replay_bundle": "report",
    "verify_bundle": "report",
    # diffusion models
    "DDPM": "models.ddpm",
    "model_family": "models.ddpm",
    "method_families": "unlearn",
    "generate_samples": "generate",
    "case_generate": "generate",
    # where independent jobs run: this process or a Ray cluster
    "ExecutorSettings": "executor",
    "JobFailed": "executor",
    "cluster_resources": "executor",
    "executor_settings": "executor",
    "parallel_slots": "executor",
    "run_jobs": "executor",
    "save_settings": "executor",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
