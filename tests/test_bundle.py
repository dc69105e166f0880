"""ModelBundle: save/load round trip, integrity check before unpickling, immutable versioned paths."""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from fraud_assets.core.bundle import (
    BundleIntegrityError,
    BundleLoadError,
    ModelBundle,
    frame_fingerprint,
    sha256_file,
)
from fraud_assets.core.sampling import stratified_sample
from fraud_assets.core.training import FraudClassifier


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(1500, 5)), columns=[f"f{i}" for i in range(5)])
    y = (rng.random(1500) < 1 / (1 + np.exp(-(-4.5 + 2 * X["f0"])))).astype(int)
    return X, y.to_numpy()


@pytest.fixture
def bundle(data):
    X, y = data
    clf = FraudClassifier("logistic_regression").fit(X, y)
    clf.threshold = 0.2
    return ModelBundle(
        preprocessor=StandardScaler().fit(X),
        classifier=clf,
        threshold=clf.threshold,
        feature_names=list(X.columns),
        algorithm="logistic_regression",
        training_window=("2025-01-01", "2025-01-30"),
        data_fingerprint=frame_fingerprint(X),
        metrics={"auc_roc": 0.9, "average_precision": 0.4},
        created_at="2026-11-27T10:15:00+00:00",
    )


def test_round_trip(bundle, data, storage_root):
    """Locally and on the S3 server: saved once, verified, loaded equal; no leftovers."""
    X, _ = data
    folder = storage_root / "bundles"
    path, digest = bundle.save(folder)
    assert path.exists() and path.parent == folder
    assert re.fullmatch(r"20261127T101500-logistic_regression-[0-9a-f]{8}", bundle.version)
    assert path.name == f"{bundle.version}.pkl"
    assert digest == sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = ModelBundle.load(path, expected_sha256=digest)
    assert loaded.version == bundle.version and loaded.threshold == 0.2
    assert loaded.feature_names == list(X.columns) and loaded.metrics == bundle.metrics
    np.testing.assert_array_equal(loaded.classifier.predict_proba(X), bundle.classifier.predict_proba(X))
    np.testing.assert_array_equal(loaded.preprocessor.transform(X), bundle.preprocessor.transform(X))
    assert ModelBundle.load(path, None).version == bundle.version  # explicit opt-out of the check
    assert loaded.summary()["version"] == bundle.version
    assert [p.name for p in folder.list()] == [path.name]  # one file, no leftovers
    assert bundle.save(folder) == (path, digest)  # saving again: the same version, left as is


def test_a_tampered_bundle_on_the_object_store_is_refused(bundle, storage_root):
    path, digest = bundle.save(storage_root)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    path.write_bytes(bytes(raw))  # replaced in place (the store's objects are not immutable)
    with pytest.raises(BundleIntegrityError, match="refusing to load"):
        ModelBundle.load(path, expected_sha256=digest)
    with pytest.raises(BundleLoadError, match=r"cannot read model bundle .*nope\.pkl"):
        ModelBundle.load(storage_root / "nope.pkl", expected_sha256=digest)


def test_tampered_byte_is_refused_before_unpickling(bundle, tmp_path, monkeypatch):
    path, digest = bundle.save(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    import fraud_assets.core.bundle as bundle_module

    def no_unpickling(*_a, **_k):
        raise AssertionError("unpickled a file that failed its integrity check")

    monkeypatch.setattr(bundle_module.pickle, "loads", no_unpickling)
    with pytest.raises(BundleIntegrityError) as info:
        ModelBundle.load(path, expected_sha256=digest)
    assert digest in str(info.value) and sha256_file(path) in str(info.value)
    assert isinstance(info.value, BundleLoadError)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(BundleLoadError, match="cannot read"):
        ModelBundle.load(tmp_path / "nope.pkl", expected_sha256=None)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(BundleLoadError, match="corrupt"):
        ModelBundle.load(junk, expected_sha256=sha256_file(junk))
    other = tmp_path / "other.pkl"
    import pickle

    other.write_bytes(pickle.dumps({"a": 1}, protocol=5))
    with pytest.raises(BundleLoadError, match="not a ModelBundle"):
        ModelBundle.load(other, expected_sha256=None)


def test_the_content_digest_names_the_model_not_the_save_time(bundle, tmp_path):
    """Two runs that train the same model save it at different times: different files, the
    same content digest (the version's hex part)."""
    import dataclasses

    later = dataclasses.replace(bundle, created_at="2026-11-28T08:00:00+00:00", version="")
    _, first_digest = bundle.save(tmp_path / "a")
    _, second_digest = later.save(tmp_path / "b")
    assert first_digest != second_digest  # the file holds its save time
    assert bundle.content_sha256() == later.content_sha256()
    assert bundle.version.rsplit("-", 1)[1] == later.version.rsplit("-", 1)[1] == bundle.content_sha256()[:8]
    changed = dataclasses.replace(bundle, threshold=0.25)
    assert changed.content_sha256() != bundle.content_sha256()


def test_versions_are_never_overwritten(bundle, tmp_path):
    path, digest = bundle.save(tmp_path)
    mtime = os.stat(path).st_mtime_ns
    again, digest_again = bundle.save(tmp_path)  # the same bundle: same version, file left as is
    assert (again, digest_again) == (path, digest) and os.stat(path).st_mtime_ns == mtime
    bundle.metrics = {"auc_roc": 0.91}
    bundle.version = ""
    other, other_digest = bundle.save(tmp_path)  # different content: a new version next to the old
    assert other != path and other_digest != digest
    assert sha256_file(path) == digest
    # A different file already at the version's path is an error, not an overwrite.
    other.write_bytes(b"something else")
    with pytest.raises(FileExistsError, match="not overwriting"):
        bundle.save(tmp_path)
    assert other.read_bytes() == b"something else"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_save_checks_consistency(bundle, tmp_path):
    bundle.feature_names = ["a", "b"]
    with pytest.raises(ValueError, match="feature_names"):
        bundle.save(tmp_path)


def test_frame_fingerprint():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
    fp = frame_fingerprint(df)
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    assert frame_fingerprint(df.copy()) == fp
    assert frame_fingerprint(df.set_axis([10, 11, 12])) == fp  # the index is not content
    assert frame_fingerprint(df.assign(a=[1.0, 2.0, 3.5])) != fp
    assert frame_fingerprint(df.rename(columns={"b": "c"})) != fp
    assert frame_fingerprint(df.iloc[::-1]) != fp
    assert frame_fingerprint(df.astype({"a": "float32"})) != fp


def test_fsspec_urls(bundle, data):
    """Any fsspec protocol: here the in-memory one."""
    X, _ = data
    path, digest = bundle.save("memory://fraudops-test/bundles")
    assert str(path).startswith("memory://fraudops-test/bundles/") and str(path).endswith(".pkl")
    assert sha256_file(path) == digest
    loaded = ModelBundle.load(path, expected_sha256=digest)
    np.testing.assert_array_equal(loaded.classifier.predict_proba(X), bundle.classifier.predict_proba(X))
    assert bundle.save("memory://fraudops-test/bundles") == (path, digest)


def test_a_training_sample_is_recorded_and_every_row_pickles_as_before(bundle, tmp_path):
    import dataclasses
    import pickle

    # every row trained on: the state holds no training_sample, so the pickle (and the content
    # digest) is that of a bundle without the field
    assert bundle.training_sample is None and "training_sample" not in bundle.__getstate__()
    assert [f.name for f in dataclasses.fields(bundle)][-1] == "training_sample"
    assert pickle.loads(pickle.dumps(bundle)).training_sample is None
    sample = stratified_sample(np.r_[np.zeros(900), np.ones(100)], 200, seed=1)
    sampled = dataclasses.replace(bundle, training_sample=sample.describe())
    assert sampled.content_sha256() != bundle.content_sha256()
    path, sha = sampled.save(tmp_path)
    loaded = ModelBundle.load(path, expected_sha256=sha)
    assert loaded.training_sample == loaded.summary()["training_sample"] == sample.describe()
    assert loaded.training_sample["weight_by_label"] == {"0": 5.0, "1": 5.0}


def test_stratified_sample_keeps_each_label_s_share_and_its_time_order():
    y = np.r_[np.zeros(9_500), np.ones(500)][np.random.default_rng(0).permutation(10_000)]
    sample = stratified_sample(y, 1_000, seed=7)
    assert sample.kept == {0: 950, 1: 50} and sample.population == {0: 9_500, 1: 500}
    assert (np.diff(sample.rows) > 0).all()  # ascending positions: time order kept, no repeats
    assert y[sample.rows].sum() == 50
    assert sample.weights == {0: 10.0, 1: 10.0}
    assert np.array_equal(stratified_sample(y, 1_000, seed=7).rows, sample.rows)  # seeded
    assert stratified_sample(y, 0, seed=7) is None and stratified_sample(y, 10_000, seed=7) is None
    rare = stratified_sample(np.r_[np.zeros(999), np.ones(1)], 10, seed=7)
    assert rare.kept == {0: 10, 1: 1}  # a present class keeps at least one row
    with pytest.raises(ValueError, match="must be 0"):
        stratified_sample(y, -1, seed=7)
