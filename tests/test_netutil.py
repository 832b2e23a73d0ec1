"""The loopback helpers the tests share: a server they start leaves the test process's logging alone."""

from __future__ import annotations

import io

from absl import logging as absl_logging
from fastapi import FastAPI

from netutil import serve_app


def test_a_server_started_in_the_test_process_closes_no_stream_of_another_handler() -> None:
    # absl's handler closes its stream on close() unless that stream is the current sys.stderr; uvicorn's
    # default logging config closed every handler of the process, so a server started after rouge_score
    # had imported absl (under pytest's capture) closed pytest's own stderr and the worker died
    stream = io.StringIO()
    handler = absl_logging.PythonHandler(stream=stream)
    try:
        with serve_app(FastAPI()):
            pass
        assert not stream.closed
    finally:
        handler.close()
