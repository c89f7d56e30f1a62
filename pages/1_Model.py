"""Model: pick a dataset and architecture and train, or upload a model file."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import family, ui

ui.setup_page("Model", ":material/neurology:")
st.title(":material/neurology: Model")
st.caption("The original model: the one that was trained on the data someone now asks to forget.")

from mu_core.data import dataset_info, list_datasets  # noqa: E402
from mu_core.errors import AuditInputError  # noqa: E402
from mu_core.models import list_archs  # noqa: E402
from mu_core.models.archs import arch_description  # noqa: E402

case = ui.current_case()
ui.lock_notice(case, shown=("train",))

# --- Current model ------------------------------------------------------------------------------
if case is not None and case.entry("original"):
    entry = case.entry("original")
    summary = entry.get("summary", {})
    st.success(
        f"Current model: **{summary.get('arch')}** on **{summary.get('dataset')}**, "
        f"{summary.get('train_samples')} training samples"
        + (f", train accuracy {summary['train_acc']:.1%}" if "train_acc" in summary else "")
        + (f", test accuracy {summary['test_acc']:.1%}" if "test_acc" in summary else "")
        + "."
    )
    st.caption(f"SHA-256 {entry.get('sha256')}")
    family.model_note(case)
    ui.link("forget", "Next: choose samples to forget", ":material/arrow_forward:")

train_tab, upload_tab = st.tabs(["Train a model", "Upload a model"])

# --- Train ----------------------------------------------------------------------------------------
with train_tab:
    c1, c2 = st.columns(2)
    dataset = c1.selectbox("Dataset", list_datasets(), key="train_dataset", help="digits is bundled with scikit-learn: no download")
    arch = c2.selectbox("Architecture", list_archs(), index=list_archs().index("cnn"), key="train_arch", format_func=lambda a: f"{a} – {arch_description(a)}")
    data_root = None
    if dataset_info(dataset).needs_root:
        data_root = st.text_input(
            "Data folder", value=ui.data_root_default(dataset), key=f"root_{dataset}",
            help="The folder (or .zip for imagefolder) holding the dataset's files; nothing is downloaded.",
        )
        if dataset == "imagefolder":
            zipped = st.file_uploader("…or upload a .zip with one sub-folder of images per class", type=["zip"], key="imagefolder_zip")
            if zipped is not None:
                from mu_core.case import atomic_write_bytes

                data_root = str(atomic_write_bytes(ui.store().home / "uploads" / Path(zipped.name).name, zipped.getvalue()))
                st.caption(f"Using the uploaded {zipped.name}.")
    c1, c2, c3 = st.columns(3)
    epochs = c1.number_input("Epochs (0 = default)", min_value=0, max_value=500, value=0, step=1, key="train_epochs")
    seed = c2.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="train_seed")
    train_size = c3.number_input(
        "Training samples (0 = all)", min_value=0, value=0, step=100, key="train_size",
        help="Train on a seeded subset: a small one overfits, which membership attacks detect more easily.",
    )

    with st.expander("SISA: train a sharded ensemble that unlearns exactly by retraining only affected shards"):
        c1, c2 = st.columns(2)
        shards = c1.number_input("Shards (0 = plain model)", min_value=0, max_value=50, value=0, key="train_shards")
        slices = c2.number_input("Slices per shard", min_value=1, max_value=20, value=4, key="train_slices")
    running = case is not None and (job := ui.jobs().get(ui.job_key(case, "train"))) is not None and job.running
    confirmed = ui.confirm_replace(case, "Training", "train_confirm")
    if st.button("Train", type="primary", disabled=running or not confirmed or ui.locked(case), key="train_button"):
        from mu_core.workflow import case_train

        target = ui.ensure_case(f"{dataset} · {arch}")
        args = {
            "dataset": dataset, "arch": arch, "data_root": data_root or None, "epochs": int(epochs) or None,
            "seed": int(seed), "train_size": int(train_size) or None, "sisa": (int(shards), int(slices)) if shards else None,
        }
        if ui.start_job(ui.job_key(target, "train"), f"Training {arch} on {dataset}", lambda progress: case_train(target, progress=progress, **args)):
            st.rerun()
    if case is not None:
        ui.job_status(ui.job_key(case, "train"))

# --- Upload ---------------------------------------------------------------------------------------
with upload_tab:
    st.markdown(
        "Upload a **.safetensors** file written by MU Audit, or a plain PyTorch **state dict** "
        "(`.pt`/`.pth`, saved with `torch.save(model.state_dict(), path)`) together with its "
        "architecture and dataset. Files are never unpickled: a file carrying pickled code is refused."
    )
    upload = st.file_uploader("Model file", type=["safetensors", "pt", "pth"], key="upload_file")
    c1, c2 = st.columns(2)
    up_arch = c1.selectbox("Architecture (for state dicts)", ["(from file)", *list_archs()], key="upload_arch")
    up_dataset = c2.selectbox("Dataset (for state dicts)", ["(from file)", *list_datasets()], key="upload_dataset")
    up_root = None
    if up_dataset != "(from file)" and dataset_info(up_dataset).needs_root:
        up_root = st.text_input("Data folder", value=ui.data_root_default(up_dataset), key=f"upload_root_{up_dataset}")
    elif up_dataset == "(from file)":
        up_root = st.text_input(
            "Data folder (if the file's dataset is read from disk)", key="upload_root_from_file",
            help="A model file never chooses the folder the server reads: give its dataset's folder here, or set MU_AUDIT_DATA.",
        )
    confirmed = ui.confirm_replace(case, "Importing", "import_confirm")
    if st.button("Import model", disabled=upload is None or not confirmed or ui.locked(case), key="import_button"):
        from mu_core.workflow import case_import_model

        target = ui.ensure_case(f"Imported · {upload.name}")
        try:
            with st.spinner("Checking and importing the model…"):
                case_import_model(
                    target, upload.getvalue(), upload.name,
                    arch=None if up_arch == "(from file)" else up_arch,
                    dataset=None if up_dataset == "(from file)" else up_dataset,
                    data_root=up_root or None,
                )
            st.rerun()
        except AuditInputError as exc:
            ui.show_error(exc)
