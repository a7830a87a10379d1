"""Where a search keeps its experiment state: a local folder, a shared path, or a URI (s3://, gs://, ...).

Ray Tune reads and writes URIs through ``pyarrow.fs``; the few files EMuLe keeps beside Tune's state go the same
way, so one storage setting serves a laptop and a cluster. On a cluster every node must reach the storage: an
object store URI, or a path mounted at the same place on every node (NFS, a shared volume).
"""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_STORAGE = "emule_runs"  # where experiment state goes when a spec or command names no storage
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(storage: str) -> bool:
    """``s3://bucket/x``, ``gs://...``, ``file:///...``: a scheme followed by ``://``."""
    return bool(_SCHEME.match(storage))


def absolute(storage: str) -> str:
    """A URI as given (without a trailing slash); a local path made absolute (``~`` expanded)."""
    if is_uri(storage):
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if is_uri(base) else str(Path(base, *parts))


def name(target: str) -> str:
    """The last part of a path or URI: a search's name from its experiment folder."""
    return target.rstrip("/").rsplit("/", 1)[-1]


def write_text(target: str, text: str) -> None:
    """Write ``text`` to a local path or a URI, creating the folders above it."""
    fs, path = _filesystem(target)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def read_bytes(target: str) -> bytes:
    fs, path = _filesystem(target)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(target: str) -> str:
    return read_bytes(target).decode()


def modified(target: str) -> float | None:
    """When the file ``target`` was last written (seconds since the epoch), or None where there is no such file."""
    import pyarrow.fs

    fs, path = _filesystem(target)
    info = fs.get_file_info(path)
    if info.type != pyarrow.fs.FileType.File:
        return None
    return info.mtime.timestamp() if info.mtime is not None else 0.0


def entries(folder: str) -> list[str]:
    """The names directly inside ``folder`` (none where it does not exist)."""
    import pyarrow.fs

    fs, path = _filesystem(folder)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    return sorted(name(i.path) for i in infos)


def _filesystem(uri: str):
    """The pyarrow filesystem and the path in it of a local path or a URI: one code path for both."""
    import pyarrow.fs

    if not is_uri(uri):
        return pyarrow.fs.LocalFileSystem(), str(Path(uri).expanduser().absolute())
    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except Exception as e:  # unknown scheme, missing credentials, pyarrow built without that filesystem
        raise ValueError(f"search.storage: cannot open {uri!r} ({type(e).__name__}: {e}); accepted: a local path or "
                         "a URI pyarrow.fs opens (s3://, gs://, hdfs://, file://)") from None
