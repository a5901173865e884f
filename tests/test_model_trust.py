"""Model directories are untrusted input: crafted ones give one clear error, read nothing outside
the model directory and the backbone store, run no code, inflate nothing, reach no network.

A table of directories built to attack one check each, then (``--runslow``) a fuzz test over
thousands of mutated directories. "Resealed" below means the attacker also rewrote every checksum and
the manifest's digest, as anyone can: checksums catch damage, the checks behind them catch the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKBONE, NEW_NEGATIVE, NEW_POSITIVE, REVIEWS
from fewlabel.errors import BackboneError, FewlabelError, ModelDirError
from fewlabel.inference.loading import load_model
from fewlabel.model_dir.manifest import MANIFEST, manifest_digest, write_manifest
from fewlabel.model_dir.store import save_model, upgrade_model

PROBE = NEW_POSITIVE + NEW_NEGATIVE
TEXTS = [t for t, _ in REVIEWS]
Y = np.array([1 if label == "positive" else 0 for _, label in REVIEWS])
LABELS = ["negative", "positive"]


# -- watching what loading touches ----------------------------------------------------------------
class Watch:
    """An audit hook (installed once; it cannot be removed): files opened or listed, network use."""

    def __init__(self) -> None:
        self.forbidden: list[str] = []
        self.allowed: list[str] | None = None
        self.bad: list[str] = []
        self.network: list[str] = []
        self.seen = 0  # paths checked: proof the hook is wired

    def _check(self, path) -> None:
        if isinstance(path, int) or path is None:
            return
        full = os.path.abspath(os.fsdecode(path))
        self.seen += 1
        inside = lambda roots: any(full == r or full.startswith(r.rstrip(os.sep) + os.sep) for r in roots)  # noqa: E731
        if inside(self.forbidden) or (self.allowed is not None and not inside(self.allowed)):
            self.bad.append(full)

    def __call__(self, event: str, args: tuple) -> None:
        if not self.forbidden and self.allowed is None:
            return
        if event in ("open", "os.listdir", "os.scandir") and args:
            self._check(args[0])
        elif event in ("socket.connect", "socket.getaddrinfo"):
            self.network.append(f"{event} {args[1:2]}")


WATCH = Watch()
sys.addaudithook(WATCH)


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside every model directory (planted backbones, secrets); nothing may read it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("secret", encoding="utf-8")
    WATCH.forbidden, WATCH.bad, WATCH.network = [str(folder)], [], []
    yield folder
    WATCH.forbidden = []
    assert not WATCH.bad, f"read outside the model directory: {WATCH.bad[:3]}"
    assert not WATCH.network, f"went to the network: {WATCH.network[:3]}"


def plant_backbone(folder: Path, sentinel: Path) -> Path:
    """A backbone directory whose modules.json names a module in it that writes ``sentinel`` when
    imported (sentence-transformers 5.x imported such modules even with trust_remote_code=False)."""
    from fewlabel.encoders.backbones import resolve

    minilm = Path(resolve("minilm").location)
    watched, WATCH.forbidden = WATCH.forbidden, []  # the test writes it; loading must not read it
    folder.mkdir(parents=True)
    for rel in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "model.safetensors"):
        (folder / rel).symlink_to(minilm / rel)
    (folder / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentinel_module.Evil"}]), encoding="utf-8"
    )
    (folder / "sentinel_module.py").write_text(
        f"from pathlib import Path\nPath({str(sentinel)!r}).write_text('ran')\nclass Evil: pass\n",
        encoding="utf-8",
    )
    WATCH.forbidden = watched
    return folder


# -- building and editing model directories -------------------------------------------------------
def manifest_of(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))


def write_raw(directory: Path, manifest: dict) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def reseal(directory: Path, manifest: dict | None = None, keep_arrays: bool = True) -> dict:
    """Rewrite every file's checksum and the manifest's digest, as an attacker would."""
    manifest = manifest if manifest is not None else manifest_of(directory)
    old = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(directory).as_posix()
        if rel in (MANIFEST, "report.html", "README.md"):
            continue
        data = path.read_bytes()
        files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        if keep_arrays and isinstance(old.get(rel), dict) and "arrays" in old[rel]:
            files[rel]["arrays"] = old[rel]["arrays"]
    manifest["files"] = files
    manifest["digest"] = manifest_digest(manifest)
    write_raw(directory, manifest)
    return manifest


def make_v1(directory: Path) -> None:
    """Turn a format 2 model into what format 1 wrote: no digest, no pins, no array shapes."""
    for meta_path in directory.rglob("strategy.json"):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta.pop("backbone", None)
        meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    manifest = manifest_of(directory)
    manifest.pop("digest")
    manifest["format_version"] = 1
    if manifest.get("backbone"):
        manifest["backbone"].pop("sha256")
    manifest = reseal(directory, manifest, keep_arrays=False)
    manifest.pop("digest")
    write_raw(directory, manifest)


@pytest.fixture(scope="module")
def embed_model(tmp_path_factory) -> Path:
    """A small embed (minilm) model; copy it before changing it."""
    from fewlabel.strategies import make_strategy

    strategy = make_strategy("embed", backbone=BACKBONE).fit(TEXTS, Y)
    out = tmp_path_factory.mktemp("trust") / "embed"
    manifest = {"strategy": {"name": "embed", "params": strategy.params}, "calibration": {"temperature": 1.0}}
    return save_model(out, strategy, LABELS, manifest)


@pytest.fixture(scope="module")
def tfidf_model(tmp_path_factory) -> Path:
    """A small tfidf model with the files training writes; copy it before changing it."""
    from fewlabel.strategies import make_strategy

    strategy = make_strategy("tfidf").fit(TEXTS, Y)
    out = tmp_path_factory.mktemp("trust") / "tfidf"
    manifest = {
        "strategy": {"name": "tfidf", "params": strategy.params, "description": strategy.describe()},
        "calibration": {"method": "temperature", "temperature": 1.3},
        "metrics": {"accuracy": {"value": 0.9}},
    }
    return save_model(out, strategy, LABELS, manifest, {"metrics.json": {"accuracy": 0.9}})


@pytest.fixture
def tfidf(tmp_path, tfidf_model) -> Path:
    dest = tmp_path / "tfidf"
    shutil.copytree(tfidf_model, dest)
    return dest


@pytest.fixture
def embed(tmp_path, embed_model) -> Path:
    dest = tmp_path / "embed"
    shutil.copytree(embed_model, dest)
    return dest


def load_and_predict(directory: Path):
    model = load_model(directory)
    return model.predict_proba(PROBE)


def refused(directory: Path, *fragments: str, kind: type[Exception] = FewlabelError) -> str:
    with pytest.raises(kind) as err:
        load_and_predict(directory)
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- the manifest covers itself --------------------------------------------------------------------
def test_reversed_labels_are_caught(tfidf, outside):
    manifest = manifest_of(tfidf)
    manifest["labels"] = manifest["labels"][::-1]
    write_raw(tfidf, manifest)
    refused(tfidf, "does not match its digest", str(tfidf / MANIFEST), kind=ModelDirError)


def test_unlisted_weights_are_refused(tfidf, outside):
    """files: {} with edited weights: caught by the digest; resealed, nothing unlisted is read."""
    weights = tfidf / "strategy" / "tfidf_weights.npz"
    with np.load(weights) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["coef"] = -arrays["coef"]
    np.savez(weights, **arrays)
    manifest = manifest_of(tfidf)
    manifest["files"] = {}
    write_raw(tfidf, manifest)
    refused(tfidf, "does not match its digest", kind=ModelDirError)
    manifest["digest"] = manifest_digest(manifest)
    write_raw(tfidf, manifest)
    refused(tfidf, "is not listed in the manifest", "strategy/", kind=ModelDirError)


def test_edited_weights_with_reused_manifest_are_caught(tfidf, outside):
    weights = tfidf / "strategy" / "tfidf_weights.npz"
    with np.load(weights) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["coef"] = -arrays["coef"]
    np.savez(weights, **arrays)
    refused(tfidf, "tfidf_weights.npz does not match its checksum", kind=ModelDirError)


@pytest.mark.parametrize("target", ["strategy/tfidf_vocabulary.json", "strategy", MANIFEST, "metrics.json"])
def test_links_out_of_the_directory_are_refused(tfidf, outside, target):
    path = tfidf / target
    copy = outside / "copy"
    shutil.move(path, copy)
    path.symlink_to(copy, target_is_directory=copy.is_dir())
    if target != MANIFEST:
        reseal(tfidf)  # the checksums of what the links point to: only the link itself is wrong
    refused(tfidf, "link" if target != MANIFEST else "not a plain file", kind=ModelDirError)


@pytest.mark.parametrize(
    "onnx_dir", ["/tmp/elsewhere", "../outside", "onnx/../../outside", "./onnx", "onnx/"]
)
def test_onnx_dir_must_stay_inside(embed, outside, onnx_dir):
    manifest = manifest_of(embed)
    manifest["onnx"] = {"dir": onnx_dir, "inputs": ["input_ids"], "max_tokens": 128, "quantize": None}
    reseal(embed, manifest)
    refused(embed, "onnx.dir", "relative path inside", kind=ModelDirError)


def test_onnx_files_must_be_listed(embed, outside):
    (embed / "onnx").mkdir()
    for name in ("encoder.onnx", "tokenizer.json", "encoder.json"):
        (embed / "onnx" / name).write_text("{}", encoding="utf-8")
    manifest = reseal(embed)
    del manifest["files"]["onnx/encoder.onnx"]
    manifest["onnx"] = {"dir": "onnx", "inputs": ["input_ids"], "max_tokens": 128, "quantize": None}
    manifest["digest"] = manifest_digest(manifest)
    write_raw(embed, manifest)
    refused(embed, "onnx/encoder.onnx is not listed", kind=ModelDirError)


def test_onnx_graph_with_external_data_is_refused(embed, outside):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    tensor = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("float_data")
    tensor.external_data.add(key="location", value=str(outside / "secret.txt"))
    graph = helper.make_graph([], "g", [], [], initializer=[tensor])
    (embed / "onnx").mkdir()
    (embed / "onnx" / "encoder.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    (embed / "onnx" / "tokenizer.json").write_text("{}", encoding="utf-8")
    (embed / "onnx" / "encoder.json").write_text('{"max_tokens": 128}', encoding="utf-8")
    manifest = manifest_of(embed)
    manifest["onnx"] = {"dir": "onnx", "inputs": ["input_ids"], "max_tokens": 128, "quantize": None}
    reseal(embed, manifest)
    with pytest.raises(ModelDirError, match="keeps its data in another file"):
        load_model(embed, engine="onnx")


# -- backbones: by hash, from the store only -------------------------------------------------------
def _v1_naming(directory: Path, name: str) -> None:
    make_v1(directory)
    manifest = manifest_of(directory)
    manifest["backbone"] = {"name": name, "hub_id": name}
    manifest["strategy"]["params"]["backbone"] = name
    write_raw(directory, manifest)


@pytest.mark.parametrize("kind", ["absolute", "relative", "hub"])
def test_format_1_backbone_paths_and_hub_ids_are_refused(embed, outside, monkeypatch, kind):
    sentinel = outside / "sentinel"
    plant_backbone(outside / "planted", sentinel)
    monkeypatch.chdir(outside)
    name = {"absolute": str(outside / "planted"), "relative": "planted", "hub": "someone/planted"}[kind]
    _v1_naming(embed, name)
    refused(embed, "format 1 model whose backbone is the directory or Hub id", "upgrade", kind=ModelDirError)
    assert not sentinel.exists()


@pytest.mark.parametrize("pinned", ["its own hash", "an unknown hash"])
@pytest.mark.parametrize("kind", ["absolute", "relative", "hub", "minilm"])
def test_format_2_backbone_is_found_by_hash_only(embed, outside, monkeypatch, kind, pinned):
    """Names are for people: a path or Hub id in the manifest is never opened; the hash finds the
    backbone in the store (or among the packaged ones), and an unknown hash finds nothing."""
    sentinel = outside / "sentinel"
    plant_backbone(outside / "planted", sentinel)
    monkeypatch.chdir(outside)
    name = {"absolute": str(outside / "planted"), "relative": "planted", "hub": "someone/planted"}.get(
        kind, kind
    )
    manifest = manifest_of(embed)
    manifest["backbone"]["name"] = manifest["backbone"]["hub_id"] = name
    manifest["strategy"]["params"]["backbone"] = name
    if pinned == "an unknown hash":
        manifest["backbone"]["sha256"] = "ab" * 32
    meta_path = embed / "strategy" / "strategy.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["backbone"] = f"{name}@sha256:{manifest['backbone']['sha256']}"
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    reseal(embed, manifest)
    if pinned == "its own hash":
        assert load_and_predict(embed).shape == (len(PROBE), 2)
    else:
        expected = "other minilm files" if kind == "minilm" else "not in this machine's backbone store"
        refused(embed, expected, kind=BackboneError)
    assert not sentinel.exists()


@pytest.mark.parametrize("value", ["/abs/path", "planted", "someone/planted", "minilm", 7, None])
def test_strategy_must_pin_the_manifests_backbone(embed, outside, value):
    meta_path = embed / "strategy" / "strategy.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["backbone"] = value
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    reseal(embed)
    if value is None:  # falls back to the manifest's pin: loads
        assert load_and_predict(embed).shape == (len(PROBE), 2)
    else:
        refused(embed, "strategy.json", "backbone", kind=ModelDirError)


def test_backbone_import_refuses_planted_module(tmp_path, outside):
    from fewlabel.encoders.backbones import resolve

    sentinel = outside / "sentinel"
    planted = plant_backbone(outside / "planted", sentinel)
    WATCH.forbidden = []  # importing at train time reads the directory given, by design
    with pytest.raises(BackboneError, match="not one of sentence-transformers' own"):
        resolve(str(planted))
    assert not sentinel.exists()


def test_tampered_store_entry_is_refused(tmp_path, outside, monkeypatch):
    """A store entry changed after import (a planted module added to modules.json) fails its hash; one
    whose record was forged too is still refused before sentence-transformers sees it."""
    from fewlabel.encoders import backbone_store
    from fewlabel.encoders.backbones import find, resolve
    from fewlabel.encoders.sentence import load_sentence_model

    monkeypatch.setenv("FEWLABEL_HOME", str(tmp_path / "home"))
    source = tmp_path / "my-encoder"
    minilm = Path(resolve("minilm").location)
    shutil.copytree(minilm, source, copy_function=os.symlink)  # importing copies what the links point to
    WATCH.forbidden = []
    backbone = resolve(str(source))  # training imports it
    assert Path(backbone.location).parent == backbone_store.store_root()
    assert (
        backbone.ref == f"my-encoder@sha256:{backbone.sha256}"
        and (Path(backbone.location) / "model.safetensors").is_file()
    )
    assert not (Path(backbone.location) / "README.md").exists()
    sentinel = outside / "sentinel"
    entry = Path(backbone.location)
    modules = json.loads((entry / "modules.json").read_text(encoding="utf-8"))
    modules[0]["type"] = "sentinel_module.Evil"
    (entry / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (entry / "sentinel_module.py").write_text(f"open({str(sentinel)!r}, 'w')\nclass Evil: pass\n")
    WATCH.forbidden = [str(outside)]
    with pytest.raises(BackboneError, match="no longer matches its hash"):
        find(backbone.ref)
    forged = backbone.__class__(backbone.name, str(entry), backbone.sha256)
    with pytest.raises(BackboneError, match="not one of sentence-transformers' own"):
        load_sentence_model(forged)
    assert not sentinel.exists()


def test_hub_id_is_fetched_only_when_training(tmp_path, outside):
    from fewlabel.encoders.backbones import resolve

    with pytest.raises(BackboneError, match="cannot fetch backbone"):
        resolve("someone/never-downloaded-model")  # offline in tests; training would fetch it


# -- arrays: shapes and sizes checked before anything is inflated -----------------------------------
def _bomb(path: Path, megabytes: int) -> None:
    """An .npz whose coef member inflates from a few kB to ``megabytes``."""
    n = megabytes * (1 << 20) // 8
    header = {"descr": "<f8", "fortran_order": False, "shape": (1, n)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("coef.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            zeros = bytes(1 << 22)
            for _ in range(megabytes // 4):
                member.write(zeros)
        archive.writestr("intercept.npy", b"")


@pytest.mark.parametrize("resealed", [False, True])
def test_npz_bomb_is_refused_before_inflating(embed, outside, monkeypatch, resealed):
    head = embed / "strategy" / "head.npz"
    _bomb(head, 64)
    assert head.stat().st_size < 200_000
    if resealed:
        manifest = manifest_of(embed)
        manifest["files"]["strategy/head.npz"]["arrays"]["coef"]["shape"] = [1, 64 * (1 << 20) // 8]
        reseal(embed, manifest)

    def no_inflating(*args, **kwargs):
        raise AssertionError("arrays were read before their sizes were checked")

    monkeypatch.setattr(np, "load", no_inflating)
    message = refused(embed, kind=ModelDirError)
    assert ("compressed array" in message) if resealed else ("checksum" in message)


def test_npz_header_must_match_its_size(embed, outside, monkeypatch):
    """A stored (uncompressed) member that declares a huge shape but holds a few bytes."""
    head = embed / "strategy" / "head.npz"
    with zipfile.ZipFile(head, "w") as archive:
        with archive.open("coef.npy", "w") as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f8", "fortran_order": False, "shape": (1, 10**9)}
            )
        archive.writestr("intercept.npy", b"")
    reseal(embed)
    monkeypatch.setattr(np, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("inflated")))
    refused(embed, "does not match its declared shape", kind=ModelDirError)


def test_arrays_must_have_the_shapes_the_manifest_records(embed, outside):
    head = embed / "strategy" / "head.npz"
    with np.load(head) as data:
        coef, intercept = data["coef"], data["intercept"]
    np.savez(head, coef=np.zeros((1, 5), dtype=coef.dtype), intercept=intercept)
    reseal(embed)  # checksums redone, the recorded shapes kept
    refused(embed, "not those its manifest records", kind=ModelDirError)
    manifest = manifest_of(embed)
    assert manifest["files"]["strategy/head.npz"]["arrays"]["coef"]["dtype"] == coef.dtype.str
    manifest["files"]["strategy/head.npz"]["arrays"]["coef"]["shape"] = [1, 5]
    reseal(embed, manifest)  # shapes forged too: the head no longer fits the backbone
    refused(embed, "features", kind=ModelDirError)


def test_pickled_arrays_are_refused(tfidf, outside):
    weights = tfidf / "strategy" / "tfidf_weights.npz"
    with np.load(weights) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["coef"] = np.array([{"evil": 1}], dtype=object)
    np.savez(weights, **arrays)
    reseal(tfidf)
    refused(tfidf, "numbers only", kind=ModelDirError)


# -- malformed manifests: one clear error naming the file and field ---------------------------------
def _deep(n: int):
    value: list = []
    for _ in range(n):
        value = [value]
    return value


MALFORMED = {
    "labels not a list": ("labels", 5),
    "one label": ("labels", ["a"]),
    "repeated labels": ("labels", ["a", "a"]),
    "labels not strings": ("labels", [1, 2]),
    "strategy a string": ("strategy", "tfidf"),
    "strategy name missing": ("strategy", {"params": {}}),
    "unknown strategy": ("strategy", {"name": "pickle"}),
    "files a list": ("files", []),
    "file entry wrong": ("files", {"metrics.json": {"sha256": 1}}),
    "file path absolute": ("files", {"/etc/passwd": {"sha256": "0" * 64, "bytes": 1}}),
    "calibration text": ("calibration", {"temperature": "hot"}),
    "negative temperature": ("calibration", {"temperature": -1}),
    "threshold above 1": ("decision", {"threshold": 2}),
    "backbone a list": ("backbone", ["minilm"]),
    "onnx a string": ("onnx", "onnx"),
    "config a list": ("config", [1]),
    "deep metrics": ("metrics", {"x": _deep(200)}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifest_fields(tfidf, case):
    field, value = MALFORMED[case]
    manifest = manifest_of(tfidf)
    manifest[field] = value
    manifest["digest"] = manifest_digest(manifest)
    write_raw(tfidf, manifest)
    message = refused(tfidf, str(tfidf / MANIFEST), kind=ModelDirError)
    assert field in message or "unsafe file path" in message or "nested" in message


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # deeper than Python's recursion limit
        '{"format": "fewlabel-model", "format": "x"}',
        '{"format": "fewlabel-model", "format_version": true}',
        '{"format": "fewlabel-model", "format_version": "2"}',
        "[]",
        "null",
        "\xff\xfe",
    ],
)
def test_unreadable_manifests(tfidf, text):
    (tfidf / MANIFEST).write_bytes(b"\xff\xfe" if text == "\xff\xfe" else text.encode("utf-8"))
    message = refused(tfidf, kind=ModelDirError)
    assert str(tfidf / MANIFEST) in message or "format version" in message


def test_malformed_model_gives_one_line_in_the_cli(tfidf):
    from typer.testing import CliRunner

    from fewlabel.cli.main import app

    manifest = manifest_of(tfidf)
    manifest["labels"] = {"not": "a list"}
    manifest["digest"] = manifest_digest(manifest)
    write_raw(tfidf, manifest)
    data = tfidf.parent / "in.csv"
    data.write_text("text\nhello\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["predict", str(tfidf), str(data), "-o", str(tfidf.parent / "out.csv")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error:" in result.stderr and "field 'labels'" in result.stderr


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"n_classes": 3}, "do not fit 3 classes"),
        ({"n_classes": "2"}, "n_classes"),
        ({"params": {"C": "strong"}}, "params.C"),
        ({"params": {"unknown": 1}}, "params"),
        ({"name": "embed"}, "expected 'tfidf'"),
    ],
)
def test_malformed_strategy_json(tfidf, outside, change, fragment):
    meta_path = tfidf / "strategy" / "strategy.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.update(change)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    reseal(tfidf)
    refused(tfidf, fragment, kind=ModelDirError)


def test_vocabulary_must_number_its_ngrams(tfidf, outside):
    path = tfidf / "strategy" / "tfidf_vocabulary.json"
    vocab = json.loads(path.read_text(encoding="utf-8"))
    first = next(iter(vocab["word"]))
    vocab["word"][first] = 10**9
    path.write_text(json.dumps(vocab), encoding="utf-8")
    reseal(tfidf)
    refused(tfidf, "does not number its n-grams", kind=ModelDirError)


# -- saves killed between the two renames -----------------------------------------------------------
KILLED_SAVE = """
import os, signal, sys
import numpy as np
from fewlabel.model_dir.store import save_model
from fewlabel.strategies import make_strategy

texts = ["good", "great", "fine", "bad", "awful", "poor"]
strategy = make_strategy("tfidf").fit(texts, np.array([1, 1, 1, 0, 0, 0]))
real = os.replace
def replace(src, dst):
    if os.path.basename(src).startswith(".model.tmp-"):  # the new model's rename into place:
        os.kill(os.getpid(), signal.SIGKILL)  # the old one is already moved aside
    return real(src, dst)
os.replace = replace
save_model(sys.argv[1], strategy, ["bad", "good"], {"strategy": {"name": "tfidf"}, "run": 2})
"""


def test_save_killed_between_renames_is_rolled_back(tmp_path, tfidf):
    target = tmp_path / "model"
    shutil.copytree(tfidf, target)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(target)], env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert not target.exists()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith(".model.old-") for n in names) and any(n.startswith(".model.tmp-") for n in names)
    model = load_model(target)  # the load puts the previous model back
    assert model.labels == ["negative", "positive"] and "run" not in model.manifest
    from fewlabel.strategies import make_strategy

    strategy = make_strategy("tfidf").fit(TEXTS, Y)
    save_model(target, strategy, LABELS, {"strategy": {"name": "tfidf"}, "run": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "tfidf"]  # leftovers removed
    assert load_model(target).manifest.extra("run") == 3


def test_next_save_rolls_back_then_replaces(tmp_path, tfidf):
    target = tmp_path / "model"
    shutil.copytree(tfidf, target)
    aside = tmp_path / ".model.old-abc123"
    aside.mkdir()
    os.replace(target, aside / "previous")
    (tmp_path / ".model.tmp-def456").mkdir()
    from fewlabel.strategies import make_strategy

    strategy = make_strategy("tfidf").fit(TEXTS, Y)
    save_model(target, strategy, LABELS, {"strategy": {"name": "tfidf"}, "run": 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "tfidf"]
    assert load_model(target).manifest.extra("run") == 4


# -- format 1 loads with a warning; upgrade rewrites it -------------------------------------------
@pytest.mark.parametrize("which", ["tfidf", "embed"])
def test_format_1_loads_with_a_warning_and_upgrades(request, which, outside, caplog):
    directory = request.getfixturevalue(which)
    expected = load_and_predict(directory)
    make_v1(directory)
    with caplog.at_level(logging.WARNING, logger="fewlabel.model_dir"):
        assert np.allclose(load_and_predict(directory), expected)
    warnings = [r.getMessage() for r in caplog.records if r.name == "fewlabel.model_dir"]
    assert len(warnings) == 1 and "format 1" in warnings[0] and "fewlabel upgrade" in warnings[0]
    assert "\n" not in warnings[0]
    summary = upgrade_model(directory)
    assert summary["changed"] and (summary["from_version"], summary["to_version"]) == (1, 2)
    manifest = manifest_of(directory)
    assert manifest["format_version"] == 2 and manifest["digest"] == manifest_digest(manifest)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fewlabel.model_dir"):
        assert np.allclose(load_and_predict(directory), expected)
    assert not [r for r in caplog.records if r.name == "fewlabel.model_dir"]
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(f".{directory.name}.")]
    assert upgrade_model(directory)["changed"] is False


def test_upgrade_refuses_a_damaged_format_1_model_and_changes_nothing(tfidf):
    make_v1(tfidf)
    weights = tfidf / "strategy" / "tfidf_weights.npz"
    content = bytearray(weights.read_bytes())
    content[len(content) // 2] ^= 0xFF
    weights.write_bytes(bytes(content))
    before = sorted(
        (p.relative_to(tfidf).as_posix(), p.read_bytes()) for p in tfidf.rglob("*") if p.is_file()
    )
    with pytest.raises(ModelDirError, match="checksum"):
        upgrade_model(tfidf)
    assert (
        sorted((p.relative_to(tfidf).as_posix(), p.read_bytes()) for p in tfidf.rglob("*") if p.is_file())
        == before
    )


def test_upgrade_with_a_backbone_directory_and_the_cli(embed, tmp_path):
    from typer.testing import CliRunner

    from fewlabel.cli.main import app
    from fewlabel.encoders.backbones import resolve

    expected = load_and_predict(embed)
    source = tmp_path / "my-minilm"
    shutil.copytree(resolve("minilm").location, source)
    _v1_naming(embed, str(source))
    with pytest.raises(ModelDirError, match="format 1 model whose backbone"):
        load_model(embed)
    result = CliRunner().invoke(app, ["upgrade", str(embed), "--backbone", str(source)])
    assert result.exit_code == 0, result.output
    assert "from format 1 to 2" in result.stderr
    assert np.allclose(load_and_predict(embed), expected)
    assert manifest_of(embed)["backbone"]["sha256"] == resolve("minilm").sha256  # the same files


def test_write_manifest_refuses_to_relabel_format_1(tfidf):
    make_v1(tfidf)
    with pytest.raises(ModelDirError, match="upgrade it first"):
        write_manifest(tfidf, manifest_of(tfidf))


# -- fuzz: thousands of hostile directories (--runslow) ---------------------------------------------
HOSTILE = [
    None, True, 0, -1, 2, 10**30, 1e308, 0.5, "", "x", "minilm", "/etc/passwd", "../outside/secret.txt",
    "planted", "someone/planted", "~/planted", "onnx/../..", "strategy", "\x00", "a" * 5000, [], {}, [1, "a"],
    {"name": "minilm"},
]  # fmt: skip


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value, depth first."""
    yield prefix, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def _set(root, path, value):
    target = root
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


class Fuzzer:
    """Mutations of a model directory: its manifest, its files, links, arrays and JSON files."""

    def __init__(self, rng, outside: Path, planted: Path, minilm_sha: str):
        self.rng, self.outside, self.planted, self.minilm_sha = rng, outside, planted, minilm_sha

    def hostile(self):
        rng = self.rng
        pick = rng.choice(
            [*HOSTILE, str(self.planted), str(self.outside / "secret.txt"), _deep(rng.choice([40, 500]))]
        )
        return (
            pick
            if rng.random() < 0.9
            else f"{rng.choice(['planted', str(self.planted), 'minilm'])}@sha256:{rng.choice([self.minilm_sha, 'ab' * 32])}"
        )

    def json_file(self, path: Path, edit) -> None:
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        value = edit(value)
        path.write_text(json.dumps(value), encoding="utf-8")

    def mutate_json(self, value):
        rng = self.rng
        paths = [p for p, _ in _paths(value) if p]
        if not paths:
            return self.hostile()
        path = rng.choice(paths)
        action = rng.random()
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        if action < 0.3 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.4 and isinstance(parent, list):
            parent.reverse()
        else:
            _set(value, path, self.hostile())
        return value

    def files(self, d: Path) -> list[Path]:
        return sorted(p for p in d.rglob("*") if p.is_file() and not p.is_symlink())

    # each mutation takes the model directory
    def manifest_field(self, d):
        self.json_file(d / MANIFEST, self.mutate_json)

    def manifest_top(self, d):
        rng = self.rng

        def edit(m):
            key = rng.choice(
                [
                    "labels",
                    "format_version",
                    "backbone",
                    "onnx",
                    "files",
                    "strategy",
                    "calibration",
                    "decision",
                ]
            )
            choices = {
                "labels": [m.get("labels", [])[::-1], ["a"], ["a", "a"], ["a", "b", "c"], [1, 2]],
                "format_version": [0, 1, 3, "2", True, 2.0, None],
                "backbone": [
                    {"name": str(self.planted), "sha256": self.minilm_sha},
                    {"name": "planted", "hub_id": "planted"},
                    {"name": "someone/planted", "sha256": "ab" * 32},
                    {"name": "minilm", "sha256": self.minilm_sha},
                    None,
                ],
                "onnx": [
                    {
                        "dir": rng.choice(["onnx", "/tmp", "../outside", "strategy", ".", str(self.outside)]),
                        "max_tokens": 64,
                    }
                ],
                "files": [{}, {"../outside/secret.txt": {"sha256": "0" * 64, "bytes": 6}}, []],
                "strategy": [{"name": rng.choice(["tfidf", "embed", "ensemble", "finetune", "setfit", "x"])}],
                "calibration": [{"temperature": rng.choice([0, -1, 1e9, "1", None, 2.5])}],
                "decision": [{"threshold": rng.choice([-0.1, 0.5, 1.5, "0.5"])}],
            }
            m[key] = rng.choice(choices[key])
            return m

        self.json_file(d / MANIFEST, edit)

    def strategy_json(self, d):
        path = self.rng.choice([p for p in d.rglob("strategy.json")] or [d / MANIFEST])
        self.json_file(path, self.mutate_json)

    def other_json(self, d):
        candidates = [
            p for p in self.files(d) if p.suffix == ".json" and p.name not in ("strategy.json", MANIFEST)
        ]
        if candidates:
            self.json_file(self.rng.choice(candidates), self.mutate_json)

    def bytes_(self, d):
        rng = self.rng
        path = rng.choice(self.files(d))
        data = bytearray(path.read_bytes())
        how = rng.random()
        if how < 0.3 and data:
            data = data[: rng.randrange(len(data))]
        elif how < 0.6 and data:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how < 0.8:
            data = bytearray(rng.randbytes(rng.randint(0, 4096)))
        else:
            data += rng.randbytes(rng.randint(1, 64))
        path.write_bytes(bytes(data))

    def remove(self, d):
        entries = [p for p in d.rglob("*") if p != d / MANIFEST]
        target = self.rng.choice(entries)
        shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()

    def link(self, d):
        rng = self.rng
        entries = [p for p in d.rglob("*") if not p.is_symlink()]
        target = rng.choice(entries + [d / "strategy" / "extra.json"])
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        destination = rng.choice(
            [self.outside / "secret.txt", self.planted, self.planted / "modules.json", Path("/etc/passwd")]
        )
        target.symlink_to(destination)

    def special(self, d):
        target = d / "strategy" / self.rng.choice(["fifo.json", "head.npz", "tfidf_vocabulary.json"])
        if target.exists():
            target.unlink()
        os.mkfifo(target)

    def extra(self, d):
        rng = self.rng
        name = rng.choice(["evil.py", "extra.npz", "modules.json", "sub/x.json", "__init__.py"])
        path = d / rng.choice(["strategy", "strategy/embed", "onnx", ""]) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"open({str(self.outside / 'sentinel')!r}, 'w')\n", encoding="utf-8")

    def arrays(self, d):
        rng = self.rng
        candidates = [p for p in self.files(d) if p.suffix == ".npz"]
        if not candidates:
            return
        path = rng.choice(candidates)
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception:
            return
        name = rng.choice(list(arrays) + ["new"])
        how = rng.random()
        if how < 0.2:
            arrays.pop(name, None)
        elif how < 0.4:
            arrays[name] = np.zeros(tuple(rng.choice([0, 1, 2, 3, 7, 384]) for _ in range(rng.randint(0, 3))))
        elif how < 0.5:
            arrays[name] = np.array([{"x": 1}], dtype=object)
        elif how < 0.6:
            arrays[name] = np.full(arrays.get(name, np.zeros(3)).shape, np.nan)
        elif how < 0.7:
            arrays[name] = np.asarray(arrays.get(name, np.zeros(3))).astype(
                rng.choice(["int8", "int64", "complex64", "U3", "bool"])
            )
        elif how < 0.8:
            arrays[name] = np.asarray(arrays.get(name, np.zeros(3))).T.copy()
        else:
            _bomb(path, rng.choice([4, 8]))
            return
        saver = np.savez_compressed if rng.random() < 0.15 else np.savez
        saver(path, **arrays)

    def safetensors(self, d):
        candidates = [p for p in self.files(d) if p.suffix == ".safetensors"]
        if not candidates:
            return self.bytes_(d)
        path = self.rng.choice(candidates)
        data = bytearray(path.read_bytes())
        length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + length])
        header = self.mutate_json(header) if self.rng.random() < 0.7 else header
        raw = json.dumps(header).encode()
        if self.rng.random() < 0.3:
            raw += b" " * self.rng.randint(1, 16)
        path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(data[8 + length :]))

    MUTATIONS = [
        "manifest_field", "manifest_top", "strategy_json", "other_json", "bytes_", "remove", "link",
        "special", "extra", "arrays", "safetensors",
    ]  # fmt: skip

    def honest_arrays(self, d: Path, manifest: dict) -> None:
        """Make the manifest's array shapes agree with the files (what a careful attacker does)."""
        from fewlabel.strategies.files import array_info

        for rel, entry in (manifest.get("files") or {}).items():
            path = d / rel
            if isinstance(entry, dict) and path.is_file() and not path.is_symlink():
                try:
                    info = array_info(path)
                except FewlabelError:
                    continue
                if info is not None:
                    entry["arrays"] = info

    def seal(self, d: Path) -> str:
        """Leave the checksums stale, reseal as format 2, or reseal as format 1."""
        roll = self.rng.random()
        if roll < 0.25:
            return "stale"
        try:
            manifest = manifest_of(d)
        except Exception:  # damaged past reading: left as it is
            return "stale"
        if not isinstance(manifest, dict):
            return "stale"
        manifest = reseal(d, manifest)
        self.honest_arrays(d, manifest)
        if roll < 0.85:
            manifest["digest"] = manifest_digest(manifest)
            write_raw(d, manifest)
            return "resealed"
        manifest.pop("digest", None)
        manifest["format_version"] = 1
        for entry in manifest["files"].values():
            entry.pop("arrays", None)
        write_raw(d, manifest)
        return "format 1"


@pytest.fixture(scope="module")
def finetune_model(tmp_path_factory) -> Path:
    """A tiny fine-tuned model (one epoch, 16 tokens, most layers frozen: about 20 s to fit)."""
    from fewlabel.strategies import make_strategy

    strategy = make_strategy("finetune", backbone=BACKBONE, epochs=1, max_tokens=16, freeze_layers=5)
    strategy.fit(TEXTS, Y)
    out = tmp_path_factory.mktemp("trust") / "finetune"
    return save_model(out, strategy, LABELS, {"strategy": {"name": "finetune", "params": strategy.params}})


def _library_roots() -> list[str]:
    import sysconfig

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/dev", "/proc", "/sys"}
    roots |= {p for p in sysconfig.get_paths().values() if p}
    roots |= {p for p in sys.path if p and os.path.isdir(p) and not p.startswith(tempfile_root())}
    return sorted(roots)


def tempfile_root() -> str:
    import tempfile

    return tempfile.gettempdir()


@pytest.mark.slow
def test_fuzz_hostile_model_directories(tmp_path, tfidf_model, embed_model, finetune_model, monkeypatch):
    """>= 1,000 mutated tfidf, embed and finetune directories: each loads and predicts, or raises a
    fewlabel error; none reads a file outside the model directory and the backbone store (the
    libraries' own files aside), reaches the network, or runs the planted module."""
    import random

    from fewlabel.encoders.backbone_store import fewlabel_home
    from fewlabel.encoders.backbones import resolve

    rng = random.Random(20240601)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret", encoding="utf-8")
    sentinel = outside / "sentinel"
    planted = plant_backbone(outside / "planted", sentinel)
    minilm = resolve("minilm")
    fuzz = Fuzzer(rng, outside, planted, minilm.sha256)
    monkeypatch.chdir(outside)  # relative paths point into the planted folder
    counts = {"tfidf": 600, "embed": 450, "finetune": 100}
    bases = {"tfidf": tfidf_model, "embed": embed_model, "finetune": finetune_model}
    for base in bases.values():
        load_and_predict(base)  # imports and the backbone warmed up before watching
    allowed_static = [str(fewlabel_home()), minilm.location, *_library_roots()]
    outcomes: dict[str, int] = {}
    failures = []
    case = 0
    for kind, n in counts.items():
        for _ in range(n):
            case += 1
            directory = tmp_path / f"case-{case}"
            shutil.copytree(bases[kind], directory)
            applied = rng.sample(Fuzzer.MUTATIONS, rng.choice([1, 1, 2, 3]))
            for name in applied:
                with contextlib.suppress(Exception):  # a mutation that does not apply to this directory
                    getattr(fuzz, name)(directory)
            sealed = fuzz.seal(directory)
            WATCH.bad, WATCH.network = [], []
            WATCH.allowed = [str(directory), *allowed_static]
            try:
                load_and_predict(directory)
                outcome = "loaded"
            except FewlabelError as err:
                outcome = type(err).__name__
            except BaseException as err:  # noqa: BLE001 - anything else is the failure we look for
                outcome = "crash"
                failures.append(f"case {case} {kind} {applied} {sealed}: {type(err).__name__}: {err}"[:400])
            finally:
                WATCH.allowed = None
            if WATCH.bad or WATCH.network:
                failures.append(
                    f"case {case} {kind} {applied} {sealed}: read {WATCH.bad[:2]} net {WATCH.network[:2]}"
                )
            outcomes[f"{kind} {sealed} {outcome}"] = outcomes.get(f"{kind} {sealed} {outcome}", 0) + 1
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(outcomes, indent=1, sort_keys=True))
    assert case >= 1000 and WATCH.seen > case  # every load opened files, and the hook saw them
    assert not failures, "\n".join(failures[:20])
    assert not sentinel.exists(), "the planted module ran"
    assert any("loaded" in k for k in outcomes) and any("ModelDirError" in k for k in outcomes)
