"""``fewlabel serve``: the HTTP prediction service of :mod:`fewlabel.serve`, run with uvicorn.

FastAPI and uvicorn are optional (``pip install 'fewlabel[serve]'``) and imported only when the
command runs, so ``fewlabel --help`` stays instant and works without them.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer

from fewlabel.cli.options import Engine, ModelDir
from fewlabel.errors import FewlabelError

API_KEY_ENV = "FEWLABEL_API_KEY"

# serve's own options (the shared ones are in options.py).
Host = Annotated[
    str,
    typer.Option(help="Address to listen on. 127.0.0.1 accepts this machine only; 0.0.0.0 accepts any."),
]
Port = Annotated[int, typer.Option(help="Port to listen on.")]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar=API_KEY_ENV,
        show_envvar=True,
        show_default=False,
        help="Require this key in the X-API-Key header of /predict and /model (default: no key; "
        "warned about beyond this machine). Prefer the environment variable: a key on the command "
        "line is visible to other users in the process list.",
    ),
]
MaxTexts = Annotated[int, typer.Option(help="Most texts in one request.")]
MaxChars = Annotated[int, typer.Option(help="Most characters in one text.")]
MaxBodyBytes = Annotated[int, typer.Option(help="Largest request body, in bytes.")]
BatchWaitMs = Annotated[
    float,
    typer.Option(help="How long a batch waits for more concurrent requests (more throughput, more latency)."),
]
MaxBatch = Annotated[int, typer.Option(help="Texts at which a batch is predicted without waiting.")]
MaxBatchChars = Annotated[
    int,
    typer.Option(
        help="Characters at which a batch is predicted without waiting (each text counted up to "
        "1,000 for a model with an encoder, which reads no further): keeps a batch of long texts "
        "short, so one-text requests never wait long behind large ones (large requests are "
        "predicted in chunks, round-robin with the others; long and short texts in turns)."
    ),
]
MaxQueuedTexts = Annotated[
    int,
    typer.Option(
        help="Most texts accepted and not yet answered; a request that would go beyond gets "
        "503 with a Retry-After header instead of waiting."
    ),
]
MaxQueuedChars = Annotated[
    int,
    typer.Option(
        help="Most characters accepted and not yet answered (bounds memory and waiting); beyond, "
        "503 with a Retry-After header. At least what one request may hold."
    ),
]
AccessLog = Annotated[bool, typer.Option(help="Log one line per request.")]


def is_loopback(host: str) -> bool:
    """True when ``host`` accepts connections from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to any interface


def _api_key(option: str | None) -> str | None:
    """The key to require, or None; an empty or blank key is refused, never taken as "no key".

    Click treats an empty environment variable as unset, so ``FEWLABEL_API_KEY=`` would silently
    serve without authentication: the variable is read here again to catch it.
    """
    env = os.environ.get(API_KEY_ENV)
    from_env = env is not None and option in (None, env)
    key = env if from_env else option
    if key is None or key.strip():
        return key
    if from_env:
        raise FewlabelError(
            f"{API_KEY_ENV} is set but empty or only whitespace, which would serve without "
            "authentication; set it to a key, or unset it to serve without one"
        )
    raise FewlabelError(
        "--api-key is empty or only whitespace; give a key, or leave the option out to serve without one"
    )


def serve(
    model_dir: ModelDir,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    api_key: ApiKey = None,
    max_texts: MaxTexts = 256,
    max_chars: MaxChars = 20_000,
    max_body_bytes: MaxBodyBytes = 2_000_000,
    batch_wait_ms: BatchWaitMs = 5.0,
    max_batch: MaxBatch = 64,
    max_batch_chars: MaxBatchChars = 8_000,
    max_queued_texts: MaxQueuedTexts = 4_096,
    max_queued_chars: MaxQueuedChars = 8_000_000,
    access_log: AccessLog = True,
    engine: Engine = "auto",
) -> None:
    """Serve a model over HTTP: POST /predict, GET /model, GET /health; the schema is at /openapi.json.

    One process (one worker): the model is loaded once and concurrent requests are batched together.
    To use more cores, run several servers behind a load balancer.
    """
    try:
        import uvicorn

        from fewlabel.serve import create_app
    except ImportError as err:
        raise FewlabelError(
            f"`fewlabel serve` needs FastAPI and uvicorn ({err}); install them with `pip install 'fewlabel[serve]'`"
        ) from None
    from fewlabel import progress

    api_key = _api_key(api_key)
    progress.set_enabled(False)  # a server has no terminal to draw bars on
    if not is_loopback(host):
        _warn_reachable(host, port, api_key)
    app = create_app(
        model_dir,
        api_key=api_key,
        max_texts=max_texts,
        max_chars=max_chars,
        max_body_bytes=max_body_bytes,
        batch_wait_ms=batch_wait_ms,
        max_batch=max_batch,
        engine=engine,
        max_batch_chars=max_batch_chars,
        max_queued_texts=max_queued_texts,
        max_queued_chars=max_queued_chars,
    )
    # workers=1: the model and the batcher live in this process; more workers would load the model
    # once each and batch separately.
    uvicorn.run(app, host=host, port=port, workers=1, access_log=access_log, server_header=False)


def _warn_reachable(host: str, port: int, api_key: str | None) -> None:
    """Say, on standard error, what listening beyond this machine exposes: the key, or the model."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    if api_key:
        console.print(
            f"[bold yellow]Note:[/] listening on {host}, reachable from other machines over plain HTTP: "
            "the API key travels unencrypted; put a TLS proxy in front for untrusted networks.",
            soft_wrap=True,
        )
    else:
        console.print(
            f"[bold yellow]Warning:[/] listening on {host} without an API key: anyone who can reach port "
            f"{port} can use the model. Set {API_KEY_ENV} (or --api-key) to require an X-API-Key header.",
            soft_wrap=True,
        )
