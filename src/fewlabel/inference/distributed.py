"""Predicting on a Ray cluster: ``fewlabel predict --runner ray`` (``pip install "fewlabel[ray]"``).

The driver (the process running ``fewlabel predict``) reads the input chunk by chunk, sends the
texts of each chunk to a pool of Ray actors, and writes the answers back in input order, through
the same writer, ``.partial`` file and progress record as a local run; so the output is the local
output, row for row, and an interrupted run resumes the same way. Each actor loads the model
directory itself with ``load_model`` (checksums checked, no code run), once, so the model directory
must be readable at the same path on every node; the input and output are only read and written by
the driver. A bounded number of chunks is in flight at a time, so the driver's memory stays flat.

Imported only when ``--runner ray`` is asked for; nothing else in fewlabel imports Ray.
"""

from __future__ import annotations

import os
import platform
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fewlabel.errors import FewlabelError
from fewlabel.model_dir.records import Manifest

try:
    import ray
except ImportError:
    raise FewlabelError(
        'predicting with --runner ray needs Ray, which is not installed: pip install "fewlabel[ray]"'
    ) from None

from fewlabel.data.files import Table
from fewlabel.inference.rows import BATCH, Predicted, fill_predictions, table_texts

IN_FLIGHT_PER_WORKER = 2  # one chunk being predicted, one waiting: workers never idle, memory bounded


class PredictWorker:
    """One Ray actor: loads the model once, then labels lists of texts."""

    def __init__(self, model_dir: str, engine: str) -> None:
        os.environ.setdefault("FEWLABEL_PROGRESS", "0")  # no progress bars in worker logs
        from fewlabel.inference.loading import load_model

        # Kept and raised from the method calls: Ray reports an error in __init__ without the
        # exception itself, and the driver needs it to print fewlabel's own message.
        self.error: FewlabelError | None = None
        try:
            if not Path(model_dir).is_dir():
                raise FewlabelError(
                    f"{model_dir}: not found on Ray node {platform.node()}; put the model directory on "
                    "storage every node mounts at the same path"
                )
            self.model = load_model(model_dir, engine=engine)
        except FewlabelError as err:
            self.error = err

    def labels(self) -> list[str]:
        if self.error is not None:
            raise self.error
        return self.model.labels

    def predict(self, texts: list[str]) -> tuple[list[str], list[float]]:
        if self.error is not None:
            raise self.error
        predicted: list[str] = []
        confidence: list[float] = []
        for start in range(0, len(texts), BATCH):
            pred, conf = self.model.predict(texts[start : start + BATCH])
            predicted.extend(pred)
            confidence.extend(float(c) for c in conf)
        return predicted, confidence


def _user_error(err: Exception) -> Exception:
    """The fewlabel error a worker raised (a bad model, a missing backbone), else ``err`` itself."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, FewlabelError) else err


class RayPredictor:
    """A pool of model-loading actors on a Ray cluster; use as a context manager.

    Args:
        model_dir: the model directory; the same path must be readable on every node.
        engine: ``auto``, ``onnx`` or ``torch``, as for ``load_model``, on each worker.
        address: None starts a local Ray instance (stopped again at the end); ``auto`` joins the
            cluster this machine belongs to (started with ``ray start``); ``ray://HOST:10001``
            connects to a remote cluster through Ray Client.
        workers: actors to start; default one per CPU of the cluster.
    """

    def __init__(
        self,
        model_dir: str | Path,
        engine: str = "auto",
        address: str | None = None,
        workers: int | None = None,
    ) -> None:
        self.model_dir = str(Path(model_dir).resolve())
        self.engine = engine
        self.address = address
        self.workers = workers
        self._started = False
        self._actors: list[Any] = []

    def __enter__(self) -> RayPredictor:
        if not ray.is_initialized():
            self._connect()
            self._started = True
        try:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            count = self.workers or max(1, cpus)
            actor = ray.remote(num_cpus=1)(PredictWorker)
            self._actors = [actor.remote(self.model_dir, self.engine) for _ in range(count)]
            # Wait for every worker to load the model, so a bad model fails before any output exists.
            ray.get([a.labels.remote() for a in self._actors])
        except ray.exceptions.RayError as err:
            self.__exit__(None, None, None)
            cause = _user_error(err)
            if cause is not err:
                raise cause from None
            raise FewlabelError(
                f"the Ray workers could not load {self.model_dir} ({err}); the model directory must be "
                "readable at that path on every node (shared storage) and fewlabel installed there"
            ) from None
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _connect(self) -> None:
        try:
            if self.address is None:
                # "local": a new instance even where `ray start` left a cluster running on this machine.
                ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            else:
                ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = "a local Ray instance" if self.address is None else f"the Ray cluster at {self.address!r}"
            hint = ""
            if (self.address or "").startswith("ray://"):
                # Seen with Ray 2.60: clusters from `ray start` require a token, and Ray Client sends
                # it only when told to.
                hint = (
                    "; if the cluster uses token authentication (recent Ray's default), set "
                    "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) in this shell"
                )
            raise FewlabelError(
                f"cannot start or reach {where} ({err}). Use --ray-address auto on a node of a cluster "
                "started with `ray start --head`, ray://HOST:10001 for a remote one, or leave "
                f"--ray-address out to start a local instance{hint}"
            ) from None

    def __exit__(self, *exc: object) -> None:
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
        if self._started:
            ray.shutdown()
            self._started = False

    def predict(
        self,
        chunks: Iterator[Table],
        manifest: Manifest,
        text_column: str | None,
        threshold: float | None,
    ) -> Iterator[Predicted]:
        """Predicted chunks in input order; at most ``IN_FLIGHT_PER_WORKER`` per worker at a time."""
        if not self._actors:
            raise RuntimeError("RayPredictor.predict used outside its `with` block")
        pending: deque[tuple[Table, list[int], int, Any]] = deque()
        limit = IN_FLIGHT_PER_WORKER * len(self._actors)

        def finish() -> Predicted:
            table, todo, n_rows, future = pending.popleft()
            try:
                predicted, confidence = ray.get(future)
            except ray.exceptions.RayActorError as err:
                raise FewlabelError(
                    f"a Ray worker stopped ({type(err).__name__}: a lost node or out of memory?); the rows "
                    "written so far are kept: run the same command again to go on from there"
                ) from None
            except ray.exceptions.RayError as err:
                raise _user_error(err) from None
            labels, confidences = fill_predictions(n_rows, todo, predicted, confidence, threshold)
            return table, labels, confidences, n_rows - len(todo)

        for number, table in enumerate(chunks):
            texts = table_texts(table, manifest, text_column)
            todo = [i for i, t in enumerate(texts) if t]
            actor = self._actors[number % len(self._actors)]
            future = actor.predict.remote([texts[i] for i in todo]) if todo else ray.put(([], []))
            pending.append((table, todo, len(texts), future))
            if len(pending) >= limit:
                yield finish()
        while pending:
            yield finish()
