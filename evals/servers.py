"""Real servers started on 127.0.0.1 at free ports, for the benchmark and the scale-out test.

Each is a context manager that starts the process, waits until it answers HTTP, yields its URL and
stops it (terminate, then kill) however the block ends. Output goes to a log file, never a pipe: a
full pipe would block a chatty server such as llama.cpp's.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ServerError(RuntimeError):
    """A server exited or never answered; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(cmd: list[str], probe: str, name: str, seconds: float = 180, env: dict | None = None,
          log_dir: Path | None = None):
    """Run cmd until the with-block ends; yields the Popen once `probe` answers (any HTTP status < 400).
    Its output goes to a temporary log (`proc.log_path`), deleted when the server stops."""
    log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=log_dir)[1])
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT)
        proc.log_path = log_path
        try:
            wait_until_up(proc, probe, log, name, seconds)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log_path.unlink(missing_ok=True)


def wait_until_up(proc, url: str, log, name: str, seconds: float) -> float:
    """Poll url until it answers; returns the seconds it took. Raises ServerError with the log's tail."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            urllib.request.urlopen(url, timeout=2)
            return time.monotonic() - started
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                raise ServerError(f"{name} exited ({proc.returncode}): "
                                  f"{log.read().decode(errors='replace')[-2000:]}") from None
            time.sleep(0.2)
    raise ServerError(f"{name} did not answer {url} within {seconds:.0f} s")


@contextmanager
def chroma_server(path: Path, seconds: float = 120):
    """`chroma run` (the CLI that ships with chromadb) storing its data under path; yields its URL."""
    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    url = f"http://127.0.0.1:{port}"
    with serve([str(chroma), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)],
               f"{url}/api/v2/heartbeat", "chroma", seconds, env={"ANONYMIZED_TELEMETRY": "False"}):
        yield url


@contextmanager
def llama_server(seconds: float = 180):
    """`python -m llama_cpp.server` serving the packaged SmolLM2 GGUF as model "smollm2"; yields .../v1."""
    from coach.llm import smollm2_path

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with serve([sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
                "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", "4096", "--n_threads", "2"], f"{url}/models", "llama-server", seconds):
        yield url


@contextmanager
def app_server(env: dict, seconds: float = 300):
    """`python app.py serve` on a free port with the given environment; yields (url, Popen, seconds to ready)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    started = time.monotonic()
    with serve([sys.executable, "app.py", "serve", "--port", str(port)], url, "app", seconds, env=env) as proc:
        yield url, proc, time.monotonic() - started
