"""The versioned model bundle: everything serving needs to score a raw transaction, in one file.

A bundle is written once to an immutable, versioned path (``<directory>/<version>.pkl``) and
never overwritten. Its SHA-256 is returned by ``save`` and checked by ``load`` *before* the
file is unpickled, so a tampered or truncated file is refused instead of executed. Locations
are `fraud_assets.core.storage` locations (a local folder or ``s3://...``); writes are atomic
and exclusive (see `Location.write_with`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.core.contract import ChampionRecord
from fraud_assets.core.models.classifier import FraudClassifier
from fraud_assets.core.storage import Location

BUNDLE_SUFFIX = ".pkl"
PICKLE_PROTOCOL = 5


class BundleLoadError(Exception):
    """The bundle file is missing, unreadable or not a model bundle."""


class BundleIntegrityError(BundleLoadError):
    """The bundle file's SHA-256 is not the expected one (tampered, truncated or the wrong file)."""


def sha256_file(path: str | os.PathLike | Location) -> str:
    """Hex SHA-256 of a file's bytes (any storage location), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Location.of(path).open_read() as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def frame_fingerprint(df: pd.DataFrame) -> str:
    """Stable SHA-256 of a DataFrame's content: column names, dtypes and values (index ignored).

    The same data gives the same digest across runs and machines; any changed value, renamed
    column, dtype or row order changes it.
    """
    digest = hashlib.sha256()
    header = [[str(c), str(t)] for c, t in zip(df.columns, df.dtypes, strict=True)]
    digest.update(json.dumps(header).encode())
    digest.update(str(len(df)).encode())
    if len(df.columns):
        hashes = pd.util.hash_pandas_object(df, index=False).to_numpy(dtype=np.uint64)
        digest.update(hashes.tobytes())
    return digest.hexdigest()


def _compact_timestamp(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).strftime("%Y%m%dT%H%M%S")


@dataclass
class ModelBundle:
    """A fitted preprocessor and classifier, with the facts needed to trust and trace them."""

    preprocessor: Any  # fitted feature transformer (opaque here; must be picklable)
    classifier: FraudClassifier
    threshold: float
    feature_names: list[str]
    algorithm: str
    training_window: tuple[str, str]  # ISO dates
    data_fingerprint: str  # sha256 of the training data (from the caller)
    metrics: dict[str, float] = field(default_factory=dict)
    created_at: str = ""  # ISO timestamp; set at save when empty
    version: str = ""  # "<YYYYmmddTHHMMSS>-<algorithm>-<content_sha256()[:8]>"; decided at save
    # The training sample and its weighting (`fraud_assets.core.sampling`); None: every row.
    training_sample: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """The fields to pickle; no ``training_sample`` when every row was trained on, so such a
        bundle pickles (and digests) as one without the field, and bundles saved before it load."""
        state = dict(self.__dict__)
        if state.get("training_sample") is None:
            state.pop("training_sample", None)
        return state

    def _check(self) -> None:
        if not isinstance(self.classifier, FraudClassifier) or not self.classifier.is_fitted:
            raise ValueError("ModelBundle.classifier must be a fitted FraudClassifier")
        if list(self.feature_names) != list(self.classifier.feature_names_):
            raise ValueError("ModelBundle.feature_names differ from the columns the classifier was fitted on")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"ModelBundle.threshold must be a probability, got {self.threshold}")
        if self.algorithm != self.classifier.algorithm:
            raise ValueError(
                f"ModelBundle.algorithm is {self.algorithm!r}, the classifier {self.classifier.algorithm!r}"
            )

    def content_sha256(self) -> str:
        """SHA-256 of everything but ``created_at`` and ``version``: the model itself.

        The same data, seed and config train the same model on any machine, and its bundle gets
        the same content digest whenever it is saved (the file's SHA-256 also covers the save
        time); comparing two runs' champions means comparing this digest.
        """
        return hashlib.sha256(
            pickle.dumps(replace(self, created_at="", version=""), protocol=PICKLE_PROTOCOL)
        ).hexdigest()

    def save(self, directory: str | os.PathLike | Location) -> tuple[Location, str]:
        """Write the bundle to ``<directory>/<version>.pkl`` and return ``(location, sha256 of the file)``.

        The version is the save time, the algorithm and the start of `content_sha256`, so
        different bundles get different paths and the same model the same hex part. An existing
        file is never overwritten: saving the same bundle again returns the existing path; a
        different file already at that path raises ``FileExistsError``. Sets ``created_at``
        (when empty) and ``version`` on self.
        """
        self._check()
        if not self.created_at:
            self.created_at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        self.version = f"{_compact_timestamp(self.created_at)}-{self.algorithm}-{self.content_sha256()[:8]}"
        payload = pickle.dumps(self, protocol=PICKLE_PROTOCOL)
        digest = hashlib.sha256(payload).hexdigest()
        target = Location.of(directory).join(f"{self.version}{BUNDLE_SUFFIX}")
        try:
            target.write_bytes(payload, exclusive=True)
        except FileExistsError:
            found = sha256_file(target)
            if found != digest:
                raise FileExistsError(
                    f"{target} already exists with different content (sha256 {found}); not overwriting"
                ) from None
        return target, digest

    @classmethod
    def load(cls, path: str | os.PathLike | Location, expected_sha256: str | None) -> ModelBundle:
        """Read a bundle; verify its SHA-256 against ``expected_sha256`` before unpickling.

        Pass ``expected_sha256=None`` explicitly to skip the check (only for files you trust).
        Raises ``BundleIntegrityError`` on a digest mismatch, ``BundleLoadError`` when the file
        is missing, unreadable or not a bundle.
        """
        where = Location.of(path)
        try:
            payload = where.read_bytes()
        except OSError as err:  # missing, unreadable, or the store cannot be reached
            raise BundleLoadError(f"cannot read model bundle {where}: {err}") from err
        if expected_sha256 is not None:
            found = hashlib.sha256(payload).hexdigest()
            if found != expected_sha256.lower():
                raise BundleIntegrityError(
                    f"model bundle {where} failed its integrity check: expected sha256 "
                    f"{expected_sha256.lower()}, file has {found}; refusing to load it"
                )
        try:
            obj = pickle.loads(payload)
        except Exception as err:  # a corrupt pickle can raise nearly anything
            raise BundleLoadError(f"model bundle {where} is corrupt: {type(err).__name__}: {err}") from err
        if not isinstance(obj, cls):
            raise BundleLoadError(f"{where} holds a {type(obj).__name__}, not a ModelBundle")
        return obj

    def record(
        self,
        location: str | os.PathLike | Location,
        sha256: str,
        mlflow_model_version: str | None = None,
        mlflow_run_id: str | None = None,
    ) -> ChampionRecord:
        """This saved bundle's record for the registry and serving (`core.contract`): what the
        `challenger_model` asset registers and `champion_model` promotes."""
        return ChampionRecord(
            version=self.version,
            bundle_uri=str(Location.of(location)),
            bundle_sha256=sha256,
            algorithm=self.algorithm,
            threshold=float(self.threshold),
            training_window=tuple(self.training_window),
            metrics={k: float(v) for k, v in self.metrics.items()},
            mlflow_model_version=mlflow_model_version,
            mlflow_run_id=mlflow_run_id,
            content_sha256=self.content_sha256(),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description (no model objects), e.g. for metadata or an API's /model endpoint."""
        return {
            "version": self.version,
            "algorithm": self.algorithm,
            "threshold": float(self.threshold),
            "n_features": len(self.feature_names),
            "training_window": list(self.training_window),
            "data_fingerprint": self.data_fingerprint,
            "created_at": self.created_at,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            **({"training_sample": self.training_sample} if self.training_sample else {}),
        }
