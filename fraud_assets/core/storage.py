"""Where fraudops keeps its files: a local folder or an object store, through one small interface.

A :class:`Location` is a local path or a URL (``s3://bucket/prefix``, any fsspec protocol) with
the fsspec storage options that reach it. The pipeline (IO managers, model bundles, drift
reports) and the scoring API (card history, merchant risk, prediction log) read and write through
it, so a location is configuration and nothing assumes a local path.

It offers the few operations the platform needs, each with the same meaning on every backend:

- ``join``/``/``, ``name``, ``parent``; ``exists``; ``list`` (a folder's entries, files and
  sub-folders alike, always fresh: s3fs would otherwise serve a cached listing and a poller
  would never see a new day);
- ``read_bytes``/``read_text``/``read_parquet``, ``read_many`` (many small objects at once:
  concurrent requests on an object store);
- ``write_bytes``/``write_text``/``write_parquet``/``write_with``: atomic where the backend
  allows it. Locally the bytes go to a temporary name in the same folder, then are renamed, so a
  crash never leaves a half-written file under the real name; on an object store the bytes are
  put as one whole object once the writer has finished (a failed writer puts nothing). ``exclusive=True`` refuses to replace an existing file
  (locally with a hard link, which fails if the name exists; on an object store by looking first,
  which is not atomic: callers use it for content-addressed names, where a race writes the same
  bytes).
- Nothing appends: an object store cannot. A log is written as one new object per flush.

Errors are :class:`StorageError` (an ``OSError``; :class:`StorageNotFound` is also a
``FileNotFoundError``, :class:`StorageExists` a ``FileExistsError``) whose message names the location, what was being done, and the likely
cause in words: missing or refused credentials, a bucket that does not exist, an endpoint that
cannot be reached. Credentials never appear in options written to configuration or metadata:
they come from the standard AWS variables (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, an instance role), as botocore finds them.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, Any

import fsspec

LOCAL = "file"
S3_PROTOCOLS = ("s3", "s3a")
CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment of every "
    "fraudops process"
)


class StorageError(OSError):
    """A storage operation failed; the message names the location, the operation and the cause."""


class StorageNotFound(StorageError, FileNotFoundError):
    """The file, folder or bucket does not exist."""


class StorageExists(StorageError, FileExistsError):
    """An exclusive write found the file there already."""


def is_url(where: str | os.PathLike) -> bool:
    """True for a URL with a protocol other than ``file://``."""
    text = os.fspath(where)
    return "://" in text and not text.startswith("file://")


def protocol_of(where: str | os.PathLike) -> str:
    text = os.fspath(where)
    return text.split("://", 1)[0].lower() if is_url(text) else LOCAL


def options_for(where: str | os.PathLike, s3_endpoint_url: str | None = None) -> dict[str, Any]:
    """The fsspec storage options a location needs, from the platform's settings.

    Only the endpoint of an S3-compatible store (MinIO, Ceph, a test server) is configuration
    here; without it botocore's own ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` apply, else AWS.
    Credentials are never options (module docstring). Local paths need none.
    """
    if protocol_of(where) in S3_PROTOCOLS and s3_endpoint_url:
        return {"client_kwargs": {"endpoint_url": s3_endpoint_url}}
    return {}


@dataclass(frozen=True)
class Location:
    """A file or folder: a local absolute path or a URL, with the options that reach it.

    Build one with :meth:`of`; :func:`fraud_assets.core.settings.FraudopsSettings.location`
    adds the configured options.
    """

    url: str
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, where: str | os.PathLike | Location, options: Mapping[str, Any] | None = None) -> Location:
        """A location from a path or URL; a local path is made absolute (so a location written
        into metadata means the same file to every process), ``file://`` dropped."""
        if isinstance(where, Location):
            return where if options is None else cls(where.url, dict(options))
        text = os.fspath(where)
        if not is_url(text):
            return cls(os.path.abspath(text.removeprefix("file://")), {})
        return cls(text.rstrip("/") or text, dict(options or {}))

    # -- names ---------------------------------------------------------------------------------

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:
        """Local locations pass as paths (pandas, open); a URL does not pretend to be one."""
        if not self.is_local:
            raise TypeError(f"{self.url} is not a local path: read it through its Location")
        return self.url

    @property
    def is_local(self) -> bool:
        return not is_url(self.url)

    @property
    def protocol(self) -> str:
        return protocol_of(self.url)

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        if self.is_local:
            return Location(os.path.dirname(self.url), self.options)
        head, _, _ = self.url.rstrip("/").rpartition("/")
        return Location(head if not head.endswith(":/") else self.url, self.options)

    def join(self, *parts: str) -> Location:
        """A location inside this one (``parts`` may hold ``/``)."""
        pieces = [str(part).strip("/") for part in parts if str(part).strip("/")]
        if not pieces:
            return self
        if self.is_local:
            return Location(os.path.join(self.url, *pieces), self.options)
        return Location("/".join([self.url.rstrip("/"), *pieces]), self.options)

    def __truediv__(self, part: str) -> Location:
        return self.join(part)

    # -- the filesystem --------------------------------------------------------------------------

    @cached_property
    def _fs_and_path(self) -> tuple[fsspec.AbstractFileSystem, str]:
        if self.is_local:
            return fsspec.filesystem(LOCAL), self.url
        try:
            return fsspec.core.url_to_fs(self.url, **self.options)
        except ImportError as err:
            raise StorageError(
                f"{self.url}: no fsspec implementation installed for {self.protocol}:// ({err})"
            ) from err

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._fs_and_path[0]

    @property
    def path(self) -> str:
        """The location's path as its filesystem names it (``bucket/key`` on S3)."""
        return self._fs_and_path[1]

    @contextlib.contextmanager
    def _doing(self, action: str) -> Iterator[None]:
        """Turn whatever the backend raises into a StorageError that says what and where."""
        try:
            yield
        except StorageError:
            raise
        except Exception as err:
            raise explain(err, self, action) from err

    def _fresh(self) -> None:
        """Forget cached listings of this location (s3fs caches them per filesystem instance)."""
        if not self.is_local:
            self.fs.invalidate_cache(self.path)

    # -- reading ---------------------------------------------------------------------------------

    def exists(self) -> bool:
        with self._doing("look for"):
            self._fresh()
            return bool(self.fs.exists(self.path))

    def list(self) -> list[Location]:
        """The entries of this folder (files and sub-folders), sorted by name; none if it does
        not exist. Always read afresh."""
        with self._doing("list"):
            if self.is_local:
                if not os.path.isdir(self.url):
                    return []
                return [self.join(name) for name in sorted(os.listdir(self.url))]
            try:
                names = self.fs.ls(self.path, detail=False, refresh=True)
            except FileNotFoundError as err:
                if "bucket" in str(err).lower():
                    raise  # a missing bucket is a configuration error, not an empty folder
                return []
        prefix = self.path.rstrip("/") + "/"
        found = sorted({name.rstrip("/").rsplit("/", 1)[-1] for name in names if name.rstrip("/") != self.path.rstrip("/") and name.startswith(prefix)})  # fmt: skip
        return [self.join(name) for name in found]

    def read_bytes(self) -> bytes:
        with self._doing("read"):
            if self.is_local:
                with open(self.url, "rb") as handle:
                    return handle.read()
            return self.fs.cat_file(self.path)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def read_parquet(self, columns: list[str] | None = None):
        import pandas as pd

        with self._doing("read Parquet from"):
            if self.is_local:
                return pd.read_parquet(self.url, columns=columns)
            with self.fs.open(self.path, "rb") as handle:
                return pd.read_parquet(handle, columns=columns)

    @contextlib.contextmanager
    def open_read(self) -> Iterator[IO[bytes]]:
        """A binary handle for streaming reads (e.g. hashing a large file in chunks)."""
        with self._doing("read"), self.fs.open(self.path, "rb") as handle:
            yield handle

    @staticmethod
    def read_many(locations: list[Location]) -> list[bytes]:
        """The bytes of many files, in order; on an object store fetched concurrently (one
        round of requests rather than one request after another)."""
        if not locations:
            return []
        first = locations[0]
        if first.is_local or any(
            loc.options != first.options or loc.protocol != first.protocol for loc in locations
        ):
            return [loc.read_bytes() for loc in locations]  # fmt: skip
        with first._doing(f"read {len(locations)} files under"):
            found = first.fs.cat([loc.path for loc in locations], on_error="raise")
        return [found[loc.path] for loc in locations]

    # -- writing ---------------------------------------------------------------------------------

    def write_with(self, write: Callable[[IO[bytes]], Any], *, exclusive: bool = False) -> None:
        """Write the file through ``write(handle)``, atomically (module docstring).

        ``exclusive``: raise ``FileExistsError`` rather than replace an existing file.
        """
        with self._doing("write"):
            if self.is_local:
                self._write_local(write, exclusive)
                return
            # Written whole, once ``write`` has finished: a writer that fails half-way leaves
            # nothing (an fsspec file would upload what it got on close). No mkdir: an object
            # store has no folders, and creating a missing bucket would hide a wrong location.
            buffer = io.BytesIO()
            write(buffer)
            if exclusive and self.exists():
                raise FileExistsError(f"{self.url} exists already")
            self.fs.pipe_file(self.path, buffer.getvalue())

    def _write_local(self, write: Callable[[IO[bytes]], Any], exclusive: bool) -> None:
        folder = os.path.dirname(self.url)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(self.url)}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            with open(tmp, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            if exclusive:
                os.link(tmp, self.url)  # fails rather than replace an existing file
            else:
                os.replace(tmp, self.url)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def write_bytes(self, data: bytes, *, exclusive: bool = False) -> None:
        self.write_with(lambda handle: handle.write(data), exclusive=exclusive)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def write_parquet(self, frame) -> None:
        self.write_with(lambda handle: frame.to_parquet(handle, index=False))

    # -- checking ----------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise a StorageError when this location cannot be used: a bucket that does not exist,
        missing or refused credentials, an endpoint that does not answer. A local folder that
        does not exist yet is fine (it is created on the first write)."""
        if self.is_local:
            return
        bucket = self.path.split("/", 1)[0]
        with self._doing("reach"):
            try:
                self.fs.info(bucket)
            except FileNotFoundError:
                raise StorageNotFound(
                    f"{self.url}: bucket {bucket!r} does not exist at {self.endpoint()}; create it "
                    "or correct the location"
                ) from None

    def endpoint(self) -> str:
        """Where an object store's requests go, in words (for messages and /health)."""
        if self.is_local:
            return "the local filesystem"
        client = self.options.get("client_kwargs", {})
        explicit = client.get("endpoint_url") if isinstance(client, Mapping) else None
        standard = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if self.protocol in S3_PROTOCOLS:
            return explicit or standard or "AWS S3"
        return explicit or self.protocol

    def describe(self) -> dict[str, str]:
        """The location and its endpoint, without credentials (for /health and metadata)."""
        return {"location": self.url, "endpoint": self.endpoint()}


def _kinds(err: BaseException) -> set[str]:
    """The class names of an error, its causes and their bases (botocore is not imported here)."""
    names: set[str] = set()
    seen = 0
    while err is not None and seen < 5:
        names.update(cls.__name__ for cls in type(err).__mro__)
        err, seen = err.__cause__ or err.__context__, seen + 1
    return names


def explain(err: BaseException, location: Location, action: str) -> StorageError:
    """A StorageError naming the location, the action and the cause in words."""
    kinds = _kinds(err)
    where = f"cannot {action} {location.url}"
    text = str(err)
    if kinds & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return StorageError(f"{where}: no credentials for {location.endpoint()}: {CREDENTIALS_HINT}")
    if kinds & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionRefusedError"}:  # fmt: skip
        return StorageError(
            f"{where}: the object store at {location.endpoint()} does not answer (is it running, "
            "and is FRAUDOPS_S3_ENDPOINT_URL right?)"
        )
    if any(code in text for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")):
        return StorageError(f"{where}: the object store refused the credentials ({text}); {CREDENTIALS_HINT}")
    if isinstance(err, FileNotFoundError) or "NoSuchBucket" in kinds:
        if "bucket" in text.lower():
            bucket = location.path.split("/", 1)[0]
            return StorageNotFound(f"{where}: bucket {bucket!r} does not exist at {location.endpoint()}")
        return StorageNotFound(f"{where}: no such file or folder")
    if isinstance(err, PermissionError):
        return StorageError(f"{where}: access denied ({text}); the credentials lack permission")
    if isinstance(err, FileExistsError):
        return StorageExists(f"{where}: it exists already")
    return StorageError(f"{where}: {type(err).__name__}: {text}")
