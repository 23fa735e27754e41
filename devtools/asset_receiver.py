"""A local stand-in for the Mask Asset Service, for demos and manual testing.

``python -m devtools.asset_receiver --port 8099 --out out/ --secret S``
accepts the uploader's multipart POSTs at ``/masks``, checks
``X-Internal-Auth``, and writes each job's files to ``OUT/<job_id>/``.
Not for production: it keeps no records beyond those files.
"""

from __future__ import annotations

import argparse
import hmac
import json
import re
from pathlib import Path

import tornado.ioloop
import tornado.web

#: Job ids the receiver will use as directory names.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class MasksHandler(tornado.web.RequestHandler):
    def initialize(self, out: Path, secret: str) -> None:
        self.out = out
        self.secret = secret

    def post(self) -> None:
        auth = self.request.headers.get("X-Internal-Auth", "")
        if not hmac.compare_digest(auth.encode(), self.secret.encode()):
            self.set_status(401)
            self.finish({"error": "bad X-Internal-Auth"})
            return
        job_id = self.get_body_argument("job_id", "")
        if not _SAFE_ID.fullmatch(job_id) or ".." in job_id:
            self.set_status(400)
            self.finish({"error": "bad job_id"})
            return
        folder = self.out / job_id
        folder.mkdir(parents=True, exist_ok=True)
        for name, parts in self.request.files.items():
            if name in ("upper_body_mask", "lower_body_mask", "seg_map"):
                (folder / f"{name}.png").write_bytes(parts[0]["body"])
        meta = {k: self.get_body_argument(k, "") for k in ("job_id", "user_id", "provider")}
        (folder / "upload.json").write_text(json.dumps(meta, indent=2))
        print(json.dumps({"event": "masks_received", "job_id": job_id,
                          "files": sorted(self.request.files)}), flush=True)
        self.finish({"status": "stored", "job_id": job_id})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.asset_receiver")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    app = tornado.web.Application([(r"/masks", MasksHandler, {"out": args.out, "secret": args.secret})])
    try:
        app.listen(args.port, address="127.0.0.1")
    except OSError as exc:
        print(json.dumps({"level": "critical", "event": "receiver_start_failed",
                          "error": f"cannot listen on 127.0.0.1:{args.port} (RECEIVER_PORT): "
                                   f"{exc.strerror}"}), flush=True)
        raise SystemExit(1) from None
    print(json.dumps({"event": "receiver_listening", "url": f"http://127.0.0.1:{args.port}/masks"}),
          flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
