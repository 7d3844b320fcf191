"""A worker process of a local multi-process build: Beam's SDK harness, left without Python's teardown.

When a build's last stage is done the runner ends each worker's control stream and waits for the
process to exit, one worker after another. The harness itself returns within ~20 ms, but the interpreter
then spent ~0.4 s per worker tearing itself down (freeing every object, module and thread state) before
the build could publish: ~0.9 s of every two-worker build, measured with a timer around each worker's
close in the runner. Nothing a worker produces depends on that teardown: every bundle's output has
reached the runner over gRPC, files are closed inside the bundles that write them, and the harness has
already torn the DoFns down and closed its channels. So once the harness returns this flushes logging and
the standard streams and exits at once. A harness that fails raises as before (a non-zero exit).
"""

from __future__ import annotations

import logging
import os
import sys


def main() -> None:
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
