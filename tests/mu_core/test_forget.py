"""Forget requests: choosing samples, refusing bad requests, reading and writing request files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mu_core.errors import AuditInputError
from mu_core.forget import (
    ForgetRequest,
    class_request,
    explicit_request,
    parse_indices,
    random_request,
    read_request,
    validate_indices,
    write_request,
)
from mu_core.train import TrainConfig, fit_model

ALL_DIGITS = np.arange(1437, dtype=np.int64)


@pytest.fixture(scope="module")
def subset_record(digits):
    """The record of an mlp trained on a seeded subset of 100 digits (one epoch)."""
    return fit_model(digits, "mlp", TrainConfig(epochs=1, seed=0), train_size=100, device="cpu")[1]


# --- choosing samples -------------------------------------------------------------------------


def test_random_request_draws_k_distinct_trained_samples_by_seed():
    request = random_request(ALL_DIGITS, 20, seed=5)
    assert len(request) == 20 and len(np.unique(request.indices)) == 20
    assert np.all(np.diff(request.indices) > 0)
    assert (request.kind, request.params) == ("random", {"k": 20, "seed": 5})
    assert random_request(ALL_DIGITS, 20, seed=5).indices.tolist() == request.indices.tolist()
    assert random_request(ALL_DIGITS, 20, seed=6).indices.tolist() != request.indices.tolist()


def test_random_request_draws_only_from_the_training_set(subset_record):
    request = random_request(subset_record.train_indices, 30, seed=0)
    assert np.isin(request.indices, subset_record.train_indices).all()


@pytest.mark.parametrize("k", [0, -3, 1437])
def test_random_request_of_none_or_all_samples_is_refused(k):
    with pytest.raises(AuditInputError, match="--random must be between 1 and 1436"):
        random_request(ALL_DIGITS, k)


def test_class_request_takes_every_trained_sample_of_the_class(digits):
    labels = digits.y_train.numpy()
    request = class_request(ALL_DIGITS, labels, 3, class_names=digits.class_names)
    assert request.indices.tolist() == np.flatnonzero(labels == 3).tolist()
    assert len(request) == 146
    assert request.params == {"class": 3, "share": 1.0, "seed": 0, "class_name": "3"}
    assert request.describe() == "all of class 3 (146 samples)"


def test_class_request_share_takes_a_seeded_part_of_the_class(digits):
    labels = digits.y_train.numpy()
    request = class_request(ALL_DIGITS, labels, 3, share=0.5, seed=1)
    assert len(request) == 73
    assert np.all(labels[request.indices] == 3)
    assert class_request(ALL_DIGITS, labels, 3, share=0.5, seed=1).indices.tolist() == request.indices.tolist()


def test_class_request_for_a_missing_class_is_refused(digits):
    labels = digits.y_train.numpy()
    with pytest.raises(AuditInputError, match="Class 10 does not exist; classes run from 0 to 9"):
        class_request(ALL_DIGITS, labels, 10)
    with pytest.raises(AuditInputError, match="--share"):
        class_request(ALL_DIGITS, labels, 1, share=0.0)
    without_ones = ALL_DIGITS[labels != 1]
    with pytest.raises(AuditInputError, match="trained on no sample of class 1"):
        class_request(without_ones, labels, 1)


def test_explicit_request_is_sorted_and_deduplicated():
    request = explicit_request([9, 2, 2, 400], ALL_DIGITS, 1437)
    assert request.indices.tolist() == [2, 9, 400]
    assert request.indices.dtype == np.int64
    assert request.kind == "indices"


def test_whole_floats_are_accepted_as_indices():
    assert validate_indices(np.array([3.0, 1.0]), ALL_DIGITS, 1437).tolist() == [1, 3]


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "indices, message",
    [
        ([], "The forget request is empty"),
        ([4, -1], "Forget index -1 is negative"),
        ([0, 1437], "Forget index 1437 is out of range: the training split has 1437 samples"),
        (["seven"], "must be whole numbers"),
        ([1.5], "must be whole numbers"),
        (list(range(1437)), "covers the whole training set"),
    ],
    ids=["empty", "negative", "out-of-range", "text", "fraction", "all-of-training"],
)
def test_bad_forget_indices_are_refused(indices, message):
    with pytest.raises(AuditInputError, match=message) as info:
        explicit_request(indices, ALL_DIGITS, 1437)
    assert str(info.value).endswith(".")


def test_never_trained_indices_are_refused(subset_record):
    untrained = np.setdiff1d(ALL_DIGITS, subset_record.train_indices)[:3]
    with pytest.raises(AuditInputError, match=r"3 requested sample\(s\) were never in the model's training set"):
        explicit_request([int(subset_record.train_indices[0]), *untrained.tolist()], subset_record.train_indices, 1437)


def test_forgetting_all_of_a_subset_model_is_refused(subset_record):
    with pytest.raises(AuditInputError, match="covers the whole training set"):
        explicit_request(subset_record.train_indices, subset_record.train_indices, 1437)


# --- parsing and files ------------------------------------------------------------------------


def test_parse_indices_reads_a_plain_list_with_comments():
    text = "# samples to forget\n12\n\n  7 \n# trailing note\n300\n"
    assert parse_indices(text) == [12, 7, 300]


def test_parse_indices_reads_the_index_column_of_a_csv():
    text = "label,Index,note\n3,12,x\n5,7,y\n"
    assert parse_indices(text) == [12, 7]
    assert parse_indices("index\n4\n5\n") == [4, 5]


def test_parse_indices_refuses_csv_without_index_and_non_numbers():
    with pytest.raises(AuditInputError, match="CSV without an 'index' column"):
        parse_indices("id,label\n1,2\n")
    with pytest.raises(AuditInputError, match=r"'x12' in the list \(entry 2\) is not a whole number"):
        parse_indices("4\nx12\n")
    with pytest.raises(AuditInputError, match="holds no indices"):
        parse_indices("# only a comment\n\n")


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".json"])
def test_request_file_round_trip(tmp_path, suffix):
    request = ForgetRequest(np.array([3, 40, 1436]), "random", {"k": 3, "seed": 2})
    path = write_request(request, tmp_path / f"forget{suffix}")
    again = read_request(path)
    assert again.indices.tolist() == [3, 40, 1436]
    if suffix == ".json":
        assert (again.kind, again.params) == ("random", {"k": 3, "seed": 2})
    else:  # a text file's comment lines describe the request but never set its kind
        assert (again.kind, again.params) == ("indices", {})
    if suffix == ".csv":
        assert path.read_text().splitlines()[0] == "index"
    assert [p.name for p in tmp_path.iterdir()] == [f"forget{suffix}"]


def test_json_request_lists_count_and_indices(tmp_path):
    path = write_request(ForgetRequest(np.array([1, 2]), "indices", {}), tmp_path / "r.json")
    assert json.loads(path.read_text()) == {"kind": "indices", "params": {}, "count": 2, "indices": [1, 2]}


def test_bad_request_files_are_refused(tmp_path):
    with pytest.raises(AuditInputError, match="does not exist"):
        read_request(tmp_path / "absent.txt")
    (tmp_path / "bad.json").write_text('{"idx": [1]}')
    with pytest.raises(AuditInputError, match="not a forget-request JSON"):
        read_request(tmp_path / "bad.json")
    (tmp_path / "neg.txt").write_text("5\n-2\n")
    with pytest.raises(AuditInputError, match=r"Forget index -2 in 'neg\.txt' is negative"):
        read_request(tmp_path / "neg.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(AuditInputError, match="not a text file of indices"):
        read_request(tmp_path / "binary.txt")
