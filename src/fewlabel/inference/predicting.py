"""Predicting with a saved model (every input row kept, two columns added) and evaluating it."""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fewlabel.atomic import (
    atomic_file,
    check_output_file,
    new_partial,
    output_lock,
    publish,
    remove_stale_temporaries,
    write_text,
)
from fewlabel.data.files import (
    FORMULA_STARTS,
    SNIFF_BYTES,
    Table,
    detect_format,
    import_openpyxl,
    iter_delimited,
    iter_jsonl_tables,
    read_table,
    reject_binary,
    text_encoding,
)
from fewlabel.data.labelled import labelled_from_table
from fewlabel.errors import DataError, FewlabelError
from fewlabel.evaluation.scores import per_class, score
from fewlabel.inference.loading import load_model
from fewlabel.inference.rows import (
    ABSTAIN,
    BATCH,
    CONF_COLUMN,
    PRED_COLUMN,
    Predicted,
    check_temperature,
    fill_predictions,
    long_texts,
    table_texts,
)
from fewlabel.model_dir.records import Manifest
from fewlabel.model_dir.store import TrainedModel


def predict_table(
    model: TrainedModel,
    table: Table,
    text_column: str | None = None,
    threshold: float | None = None,
    show_progress: bool = True,
) -> tuple[list[str], list[float | None], int]:
    """Labels and confidences for every row; rows with an empty text get neither. Returns also their count.

    With ``threshold``, a prediction whose confidence is below it is replaced by ``ABSTAIN`` (the
    confidence is kept), so uncertain rows can go to a person instead.
    """
    from fewlabel import progress

    texts = table_texts(table, model.manifest, text_column)
    todo = [i for i, t in enumerate(texts) if t]
    predicted: list[str] = []
    confidence: list[float] = []
    bar = progress.bar("Predicting", len(todo)) if show_progress else contextlib.nullcontext(lambda n=1: None)
    with bar as advance:
        for start in range(0, len(todo), BATCH):
            chunk = todo[start : start + BATCH]
            pred, conf = model.predict([texts[i] for i in chunk])
            predicted.extend(pred)
            confidence.extend(float(c) for c in conf)
            advance(len(chunk))
    labels, confidences = fill_predictions(len(texts), todo, predicted, confidence, threshold)
    return labels, confidences, len(texts) - len(todo)


def _write(
    table: Table,
    labels: list[str],
    confidences: list[float | None],
    out: TextIO,
    fmt: str,
    header: bool = True,
) -> None:
    _check_clash(table)
    if fmt == "jsonl":
        for row, label, conf in zip(table.raw or table.rows, labels, confidences, strict=True):
            record = {
                **row,
                PRED_COLUMN: label or None,
                CONF_COLUMN: None if conf is None else round(conf, 6),
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    writer = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    if header:
        writer.writerow([*table.columns, PRED_COLUMN, CONF_COLUMN])
    for row, label, conf in zip(table.rows, labels, confidences, strict=True):
        writer.writerow(
            [*(row.get(c, "") for c in table.columns), label, "" if conf is None else f"{conf:.6f}"]
        )


def _check_clash(table: Table) -> None:
    for clash in (PRED_COLUMN, CONF_COLUMN):
        if clash in table.columns:
            raise DataError(
                f"{table.path}: already has a column {clash!r}; rename it so predictions do not replace it"
            )


# Excel's limits: longer cells are cut (the prediction was made on the whole text), more rows refused.
XLSX_MAX_CELL_CHARS = 32_767
XLSX_MAX_ROWS = 1_048_576


# Writes one predicted chunk: the table, its labels and confidences, and whether to write a header first.
Writer = Callable[[Table, list[str], list[float | None], bool], None]


def _text_writer(out: TextIO, fmt: str) -> Writer:
    return lambda table, labels, confidences, header: _write(table, labels, confidences, out, fmt, header)


class _SheetWriter:
    """Appends predicted chunks to an openpyxl write-only worksheet, every text cell stored as text."""

    def __init__(self, sheet: Any) -> None:
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, WriteOnlyCell

        self.sheet = sheet
        self.rows = 0
        self._illegal = ILLEGAL_CHARACTERS_RE
        self._cell = WriteOnlyCell

    def cell(self, value: str | float | None) -> Any:
        if not isinstance(value, str):
            return value
        # Control characters a workbook cannot hold are dropped rather than failing the whole file.
        text = self._illegal.sub("", value)[:XLSX_MAX_CELL_CHARS]
        if not text.startswith(FORMULA_STARTS):
            return text
        cell = self._cell(self.sheet, value=text)
        cell.data_type = "s"  # never a formula: a spreadsheet shows it as typed and evaluates nothing
        return cell

    def __call__(
        self, table: Table, labels: list[str], confidences: list[float | None], header: bool
    ) -> None:
        _check_clash(table)
        if header:
            self.sheet.append([self.cell(c) for c in (*table.columns, PRED_COLUMN, CONF_COLUMN)])
        if self.rows + len(table.rows) >= XLSX_MAX_ROWS:
            raise DataError(
                f"{table.path}: more rows than an Excel sheet holds ({XLSX_MAX_ROWS - 1:,}); write .csv instead"
            )
        for row, label, conf in zip(table.rows, labels, confidences, strict=True):
            self.sheet.append(
                [
                    *(self.cell(row.get(c, "")) for c in table.columns),
                    self.cell(label) if label else None,
                    None if conf is None else round(conf, 6),
                ]
            )
        self.rows += len(table.rows)


CHUNK_ROWS = 2048  # rows read, predicted and written at a time: memory stays flat on any input size


def _stream_lines(handle: TextIO, chunk_rows: int) -> Iterator[Table]:
    rows, lines = [], []
    for number, line in enumerate(handle, start=1):
        rows.append({"text": line.rstrip("\n").rstrip("\r")})
        lines.append(number)
        if len(rows) >= chunk_rows:
            yield Table("<stdin>", ["text"], rows, lines, "lines")
            rows, lines = [], []
    yield Table("<stdin>", ["text"], rows, lines, "lines")


def stream_table(
    path: str,
    format: str | None,
    chunk_rows: int = CHUNK_ROWS,
    stdin: TextIO | None = None,
    sheet: str | int | None = None,
):
    """Yield the input as Tables of at most ``chunk_rows`` rows, never holding the whole file.

    Parquet, gzip and Excel inputs are read whole; ``sheet`` chooses a workbook's sheet.
    """
    if path == "-":
        yield from _stream_lines(stdin or sys.stdin, chunk_rows)
        return
    file = Path(path)
    fmt = detect_format(file, format)
    whole = fmt in {"parquet", "xlsx"} or file.suffix.lower() == ".gz" or sheet is not None
    if not file.exists() or file.is_dir() or whole:
        # read_table explains a missing file and a misplaced sheet
        yield read_table(path, format, sheet)
        return
    with file.open("rb") as raw:
        head = raw.read(SNIFF_BYTES)
    reject_binary(file, head)  # a workbook or PDF is named for what it is, not decoded as text
    try:
        with file.open("r", encoding=text_encoding(head), newline="") as handle:
            if fmt == "jsonl":
                yield from iter_jsonl_tables(handle, file, chunk_rows)
            else:
                yield from iter_delimited(handle, file, "\t" if fmt == "tsv" else ",", fmt, chunk_rows)
    except UnicodeDecodeError:
        read_table(path, format)  # re-read to name the line with the bad byte
        raise


def _model_fingerprint(manifest: Manifest) -> str:
    files = manifest.to_json().get("files", {})
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


# One predicted chunk: the rows, their labels and confidences, and how many rows had no text.


@dataclass
class _Progress:
    rows: int = 0
    empty: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    cut: int = 0  # texts longer than MAX_TEXT_CHARS, predicted on their start


def skip_rows(chunks: Iterator[Table], skip: int) -> Iterator[Table]:
    """The chunks without their first ``skip`` rows (those an interrupted run already wrote)."""
    for table in chunks:
        if skip >= len(table.rows):
            skip -= len(table.rows)
            continue
        if skip:
            raw = table.raw[skip:] if table.raw else None
            table = Table(
                table.path, table.columns, table.rows[skip:], table.line_numbers[skip:], table.format, raw
            )
            skip = 0
        yield table


def _predict_locally(
    model: TrainedModel, chunks: Iterator[Table], text_column: str | None, threshold: float | None
) -> Iterator[Predicted]:
    for table in chunks:
        yield (table, *predict_table(model, table, text_column, threshold, show_progress=False))


def _write_stream(
    predicted: Iterator[Predicted],
    write: Writer,
    done: _Progress,
    header: bool,
    on_chunk: Callable[[], None] | None = None,
    count_long: Callable[[Table], int] | None = None,
) -> None:
    """Write each predicted chunk as it comes, in input order, counting what was written.

    ``count_long`` counts a chunk's texts that were cut before predicting (see ``long_texts``).
    """
    from fewlabel import progress

    with progress.bar("Predicting (rows)", None) as advance:
        for table, labels, confidences, empty in predicted:
            done.cut += count_long(table) if count_long else 0
            write(table, labels, confidences, header)
            header = False
            done.rows += len(table.rows)
            done.empty += empty
            for label in labels:
                if label:
                    done.counts[label] = done.counts.get(label, 0) + 1
            if on_chunk:
                on_chunk()
            advance(len(table.rows))


RUNNERS = ("local", "ray")
STDOUT = "-"  # as an output path: standard output


def refuse_existing(path: Path, force: bool) -> None:
    """Refuse, before any work, to replace an existing output unless ``force`` asks for it."""
    if not force and (path.exists() or path.is_symlink()):
        raise DataError(f"{path}: already exists; pass --force to replace it")


def predict_file(
    model_dir: str | Path,
    input_path: str,
    output_path: str | None = None,
    text_column: str | None = None,
    format: str | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    threshold: float | None = None,
    engine: str = "auto",
    chunk_rows: int = CHUNK_ROWS,
    resume: bool = True,
    runner: str = "local",
    ray_address: str | None = None,
    sheet: str | int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Predict every row of ``input_path`` (``-``: one text per line on stdin) into ``output_path``.

    The output holds every input column plus ``predicted_label`` and ``confidence`` (the probability
    of the predicted label), after a header row; texts read from stdin are its ``text`` column.
    ``output_path`` None or ``-`` writes to ``stdout`` (CSV, or TSV or JSONL for such an input, as
    a file without a suffix); an existing output file is replaced only with ``force``. Rows are read, predicted and written in chunks, so inputs larger than
    memory work. A file output is built in a hidden ``.partial`` file beside it, with a progress
    record after every chunk: an interrupted run started again with the same input and model goes
    on where it stopped, without redoing or duplicating rows; the output appears only when complete,
    and never over the input. While a run writes a file, a lock file beside it makes a second run
    into the same file refuse (:class:`~fewlabel.errors.OutputInUseError`) rather than mix the two.

    A text longer than ``MAX_TEXT_CHARS`` (100,000 characters, as in training) is predicted on its
    first 100,000 characters; its row is written whole, and the summary's ``cut_texts`` counts them.

    An ``.xlsx`` output (``pip install "fewlabel[xlsx]"``) is one worksheet, written in full at the
    end and moved into place whole; an interrupted run starts again from the first row (a workbook
    cannot be appended to). Its text cells are stored as text, so a text that starts with ``=`` is
    never run as a formula; cells longer than Excel's 32,767 characters are cut. An Excel input is
    read whole; standard output gets CSV.

    Args:
        sheet: the sheet of an Excel input to read, by name or 0-based index (default: the first).
        engine: how each process runs the model's encoder (see ``load_model``); ``ray`` is short
            for ``runner="ray"`` with the ``auto`` engine.
        runner: ``local`` predicts in this process; ``ray`` reads and writes here but predicts the
            chunks in parallel on a Ray cluster (``pip install "fewlabel[ray]"``), each worker
            loading ``model_dir`` itself. The output is the same, row for row.
        ray_address: the cluster for ``runner="ray"``: None starts a local Ray instance, ``auto``
            joins the cluster this machine belongs to, ``ray://HOST:10001`` a remote one.
    """
    engine, runner = _checked_runner(engine, runner, ray_address, threshold)
    out, out_fmt = _checked_output(input_path, output_path, format, force)
    chunks = stream_table(input_path, format, chunk_rows, stdin, sheet)  # a generator: reads when used
    run = _Run(model_dir, input_path, chunks, text_column, threshold, out, out_fmt, stdout, resume)
    if out is None:
        return _predict_with_model(run, engine, runner, ray_address)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Held from before the model loads until the output is in place: a second run into the same file
    # refuses at once, and whatever a killed run left beside the output can safely be removed.
    with output_lock(out):
        return _predict_with_model(run, engine, runner, ray_address)


def _checked_runner(
    engine: str, runner: str, ray_address: str | None, threshold: float | None
) -> tuple[str, str]:
    """The engine and runner to use; DataError for a runner, address or threshold that cannot work."""
    if engine == "ray":
        # Where to run, not how: what --runner names. Accepted because "--engine ray" is how many ask.
        engine, runner = "auto", "ray"
    if runner not in RUNNERS:
        raise DataError(f"unknown runner {runner!r}; use local or ray")
    if ray_address is not None and runner != "ray":
        raise DataError("--ray-address only applies with --runner ray")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise DataError(f"--threshold must be between 0 and 1, got {threshold}")
    return engine, runner


def _checked_output(
    input_path: str, output_path: str | None, format: str | None, force: bool
) -> tuple[Path | None, str]:
    """The output file (None for standard output) and its format, checked before any work."""
    in_fmt = "lines" if input_path == "-" else detect_format(Path(input_path), format)
    # Written as CSV unless the input is TSV or JSONL: texts from stdin become a "text" column.
    out_fmt = "csv" if in_fmt in {"lines", "parquet", "xlsx"} else in_fmt
    if output_path is None or output_path == STDOUT:
        return None, out_fmt
    check_output_file(output_path)  # now, not after predicting everything; as given, with any final "/"
    out = Path(output_path)
    if input_path != "-" and out.resolve() == Path(input_path).resolve():
        raise DataError(f"{out}: is the input file; write predictions to a new file so the input is kept")
    refuse_existing(out, force)
    if out.suffix.lower() in {".xls", ".xlsm", ".xlsb", ".ods"}:
        raise DataError(f"{out}: writing {out.suffix} is not supported; use .xlsx, .csv, .tsv or .jsonl")
    out_fmt = detect_format(out) if out.suffix else out_fmt
    if out_fmt == "parquet":
        raise DataError(f"{out}: writing Parquet is not supported; use .csv, .tsv, .jsonl or .xlsx")
    if out_fmt == "xlsx":
        import_openpyxl(out, "writing")  # before any prediction: refuse now, not after an hour
    return out, out_fmt


@dataclass(frozen=True)
class _Run:
    """One checked ``predict_file`` call: what to read, how to predict, where to write."""

    model_dir: str | Path
    input_path: str
    chunks: Iterator[Table]
    text_column: str | None
    threshold: float | None
    out: Path | None  # None: standard output
    out_fmt: str
    stdout: TextIO | None
    resume: bool


# Predicts a stream of chunks: in this process, or on a Ray cluster.
Predict = Callable[[Iterator[Table]], Iterator[Predicted]]


def _predict_with_model(run: _Run, engine: str, runner: str, ray_address: str | None) -> dict[str, Any]:
    from fewlabel.model_dir.manifest import load_manifest

    if load_manifest(run.model_dir).task == "multi-label":
        return _predict_multilabel(run, engine, runner)
    if runner == "ray":
        from fewlabel.inference.distributed import RayPredictor
        from fewlabel.model_dir.manifest import MANIFEST, read_manifest, verify_files
        from fewlabel.model_dir.records import manifest_record

        checked = read_manifest(run.model_dir)
        verify_files(Path(run.model_dir), checked)  # here, before any worker starts
        manifest = manifest_record(checked, str(Path(run.model_dir) / MANIFEST))
        check_temperature(manifest, run.model_dir)
        with RayPredictor(run.model_dir, engine=engine, address=ray_address) as cluster:
            return _write_predictions(
                run,
                manifest,
                lambda chunks: cluster.predict(chunks, manifest, run.text_column, run.threshold),
            )
    model = load_model(run.model_dir, engine=engine)
    check_temperature(model.manifest, run.model_dir)
    return _write_predictions(
        run, model.manifest, lambda chunks: _predict_locally(model, chunks, run.text_column, run.threshold)
    )


def _predict_multilabel(run: _Run, engine: str, runner: str) -> dict[str, Any]:
    """A multi-label model's label sets and per-label confidences (:mod:`fewlabel.inference.multilabel`)."""
    from fewlabel.inference.multilabel import MultiLabelWriter, write_predictions

    if runner == "ray":
        raise DataError("the Ray runner is single-label only; predict with a multi-label model locally")
    if run.threshold is not None:
        raise DataError(
            "--threshold is single-label only: a multi-label model answers each label at its own threshold"
        )
    model = load_model(run.model_dir, engine=engine)
    if run.out is None:
        writer = MultiLabelWriter(model, run.out_fmt, run.stdout or sys.stdout)
        return {**write_predictions(model, run.chunks, writer, run.text_column), "output": STDOUT}
    if run.out_fmt == "xlsx":
        from openpyxl import Workbook

        remove_stale_temporaries(run.out)
        workbook = Workbook(write_only=True)
        writer = MultiLabelWriter(model, "xlsx", sheet=_SheetWriter(workbook.create_sheet("predictions")))
        done = write_predictions(model, run.chunks, writer, run.text_column)
        with atomic_file(run.out, "wb") as handle:
            workbook.save(handle)
    else:
        with atomic_file(run.out, "w", newline="") as handle:
            done = write_predictions(
                model, run.chunks, MultiLabelWriter(model, run.out_fmt, handle), run.text_column
            )
    return {**done, "output": str(run.out), "resumed_rows": 0}


def _write_predictions(run: _Run, manifest: Manifest, predict: Predict) -> dict[str, Any]:
    if ABSTAIN in manifest.labels and run.threshold is not None:
        raise DataError(f"the model has a class named {ABSTAIN!r}; --threshold cannot mark abstentions")

    def count_long(table: Table) -> int:
        return long_texts(table, manifest, run.text_column)

    if run.out is None:
        done = _Progress()
        write = _text_writer(run.stdout or sys.stdout, run.out_fmt)
        _write_stream(predict(run.chunks), write, done, True, count_long=count_long)
        return {
            "rows": done.rows,
            "empty_texts": done.empty,
            "predicted": done.counts,
            "output": STDOUT,
            "cut_texts": done.cut,
        }
    if run.out_fmt == "xlsx":
        return _predict_into_workbook(run.out, run.chunks, predict, count_long)
    identity = {
        "model": _model_fingerprint(manifest),
        "format": run.out_fmt,
        "threshold": run.threshold,
        "text_column": run.text_column,
    }
    return _predict_into_file(
        run.input_path, run.out, run.out_fmt, identity, run.chunks, predict, run.resume, count_long
    )


def _predict_into_file(
    input_path: str,
    out: Path,
    out_fmt: str,
    identity: dict[str, Any],
    chunks: Iterator[Table],
    predict: Predict,
    resume: bool,
    count_long: Callable[[Table], int],
) -> dict[str, Any]:
    """Write the predictions through a ``.partial`` file with a progress record, resuming a stopped run.

    Called with the output's lock held. Each run writes its own ``.partial`` file, named in the
    progress record; the one a matching record names is resumed, any other is a killed run's and
    is removed.
    """
    state_path = out.parent / f".{out.name}.progress.json"
    identity = {**_input_identity(input_path), **identity}
    found = None
    if resume and input_path != "-" and state_path.exists():
        found = _resumable(out, state_path, identity)
    partial, offset, done = found or (new_partial(out), 0, _Progress())
    skip = resumed = done.rows
    remove_stale_temporaries(out, sidecars=[state_path], keep=[partial])
    progress = _ProgressRecord(state_path, identity, partial)
    try:
        with open(partial, "r+" if offset else "w", encoding="utf-8", newline="") as handle:
            handle.seek(offset)
            handle.truncate()  # drop whatever a stopped run wrote after its last checkpoint
            write = _text_writer(handle, out_fmt)
            checkpoint = functools.partial(progress.write, handle, done)
            _write_stream(predict(skip_rows(chunks, skip)), write, done, offset == 0, checkpoint, count_long)
    except DataError:
        # Bad input will not get better by resuming: leave nothing behind.
        partial.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        raise
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FewlabelError(
                f"{out}: no space left on the disk after {done.rows:,} rows; free some space and run the "
                "same command again: it goes on from there"
            ) from err
        if err.filename is None or err.filename == str(partial):  # a failed write names no file
            err.filename = str(out)
        raise
    publish(partial, out)
    state_path.unlink(missing_ok=True)
    return {
        "rows": done.rows,
        "empty_texts": done.empty,
        "predicted": done.counts,
        "output": str(out),
        "resumed_rows": resumed,
        "cut_texts": done.cut,
    }


def _input_identity(input_path: str) -> dict[str, Any]:
    """The input file as the progress record names it: a resumed run must read the same file."""
    source = Path(input_path)
    return {
        "input": str(source.resolve()) if input_path != "-" else "-",
        "input_bytes": source.stat().st_size if source.is_file() else None,
        "input_mtime_ns": source.stat().st_mtime_ns if source.is_file() else None,
    }


def _resumable(out: Path, state_path: Path, identity: dict[str, Any]) -> tuple[Path, int, _Progress] | None:
    """The ``.partial`` file, byte offset and progress of a stopped run into ``out`` with the same
    ``identity``; None when the progress record is unreadable or names no such run."""
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        state = {}
    named = state.get("partial") if isinstance(state, dict) else None
    found = out.parent / named if isinstance(named, str) and named == Path(named).name else None
    if not (
        found is not None
        and found.name.startswith(f".{out.name}.")
        and found.is_file()
        and state.get("identity") == identity
        and 0 <= state.get("bytes", -1) <= found.stat().st_size
    ):
        return None
    done = _Progress(
        int(state["rows"]),
        int(state.get("empty", 0)),
        dict(state.get("counts", {})),
        int(state.get("cut", 0)),
    )
    return found, int(state["bytes"]), done


@dataclass(frozen=True)
class _ProgressRecord:
    """The record beside a file output, written after every chunk, from which a stopped run resumes."""

    path: Path
    identity: dict[str, Any]
    partial: Path

    def write(self, handle: TextIO, done: _Progress) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        record = {
            "identity": self.identity,
            "partial": self.partial.name,
            "rows": done.rows,
            "bytes": handle.tell(),
            "counts": done.counts,
            "empty": done.empty,
            "cut": done.cut,
        }
        write_text(self.path, json.dumps(record))


def _predict_into_workbook(
    out: Path,
    chunks: Iterator[Table],
    predict: Predict,
    count_long: Callable[[Table], int],
) -> dict[str, Any]:
    """Write the predictions as one worksheet of a new workbook, which appears whole when complete.

    openpyxl's write-only mode keeps the rows in a temporary file, not in memory, until the save.
    Called with the output's lock held.
    """
    from openpyxl import Workbook

    remove_stale_temporaries(out)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("predictions")
    done = _Progress()
    _write_stream(predict(chunks), _SheetWriter(sheet), done, True, count_long=count_long)
    with atomic_file(out, "wb") as handle:
        workbook.save(handle)
    return {
        "rows": done.rows,
        "empty_texts": done.empty,
        "predicted": done.counts,
        "output": str(out),
        "resumed_rows": 0,
        "cut_texts": done.cut,
    }


def evaluate_file(
    model_dir: str | Path,
    data_path: str,
    text_column: str | None = None,
    label_column: str | None = None,
    format: str | None = None,
    sheet: str | int | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1 and log loss (with 95% intervals), per-class scores and the confusion matrix.

    ``sheet`` chooses the sheet of an Excel workbook (name or 0-based index; default: the first).
    """
    model = load_model(model_dir)
    check_temperature(model.manifest, model_dir)
    table = read_table(data_path, format, sheet)
    if model.multi_label:
        from fewlabel.inference.multilabel import evaluate_multilabel

        return {
            "data": data_path,
            "model": str(model_dir),
            **evaluate_multilabel(model, table, text_column, label_column),
        }
    trained = model.manifest
    text_column = text_column or (trained.text_column if trained.text_column in table.columns else None)
    label_column = label_column or (trained.label_column if trained.label_column in table.columns else None)
    data = labelled_from_table(table, text_column, label_column, dedupe=False, min_per_class=1, min_classes=1)
    unknown = sorted(set(data.labels) - set(model.labels))
    if unknown:
        raise DataError(
            f"{data_path}: label(s) {', '.join(repr(u) for u in unknown)} are not among the model's labels "
            f"({', '.join(repr(m) for m in model.labels)}); fix them or train on data that has them"
        )
    index = {label: i for i, label in enumerate(model.labels)}
    y = np.array([index[label] for label in data.labels])
    proba = model.predict_proba(data.texts)
    pred = model.decide(proba)
    scores = score(y, proba, pred=pred)
    majority = float(np.bincount(y, minlength=len(model.labels)).max() / len(y))
    return {
        "data": data_path,
        "model": str(model_dir),
        **scores.to_dict(),
        "majority_baseline_accuracy": majority,
        "labels": model.labels,
        **per_class(y, pred, model.labels),
        "cv_estimate_at_training": (
            trained.metrics.accuracy.model_dump(exclude_unset=True)
            if trained.metrics and trained.metrics.accuracy
            else None
        ),
    }
