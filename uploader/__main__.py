"""``python -m uploader`` (the service) and ``python -m uploader redrive``.

Start-up fails with a one-line message and exit status 2 when the
configuration is unusable, e.g. ``MASK_ASSET_URL`` or ``MASK_COMPONENT_SECRET``
is not set.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from common.logs import register_secret
from common.preflight import MIN_SECRET_LENGTH, check_upload
from common.startup import start_process

from .redrive import redrive
from .service import UploaderService

#: Exit status for a configuration that cannot run.
EXIT_CONFIG = 2



def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m uploader",
                                     description="Deliver masks to the Mask Asset Service.")
    sub = parser.add_subparsers(dest="command")
    rd = sub.add_parser("redrive", help="send dead-lettered jobs again")
    rd.add_argument("job_ids", nargs="*", metavar="JOB_ID",
                    help="jobs to send again (default: every dead-lettered job)")
    rd.add_argument("--retries", type=int, default=None,
                    help="retries after the first attempt (default: upload.retries)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # registered before loading, so even a config error quoting it is redacted;
    # a too-short value is refused below (and would garble unrelated words)
    env_secret = os.environ.get("MASK_COMPONENT_SECRET", "")
    if len(env_secret) >= MIN_SECRET_LENGTH:
        register_secret(env_secret)
    settings = start_process("uploader", check_upload)  # the rule start.sh checks too
    if settings is None:
        return EXIT_CONFIG
    register_secret(settings.upload.secret)
    if args.command == "redrive":
        return redrive(settings, args.job_ids, args.retries)
    service = UploaderService(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
