"""The Tornado HTTP front end: accepts photos, hands jobs to the broker, reports state.

Run it with ``python -m frontend``. Modules, from the bottom up:

- :mod:`frontend.errors`         ApiError, the one exception every handler raises for a client error
- :mod:`frontend.multipart`      a strict multipart/form-data parser
- :mod:`frontend.uploads`        the POST /process form rules and photo validation
- :mod:`frontend.photo_store`    writing photos under TEMP_FOLDER/incoming (0600, fsync)
- :mod:`frontend.broker_client`  async request/reply to the broker over one DEALER socket
- :mod:`frontend.stats_view`     /health and /stats bodies from the broker's stats
- :mod:`frontend.metrics`        /metrics: Prometheus families from the broker's stats
- :mod:`frontend.inflight`       the count of requests in progress (for the SIGTERM drain)
- :mod:`frontend.base`           JsonHandler: JSON errors, API key, in-flight tracking
- :mod:`frontend.process_handler`  POST /process
- :mod:`frontend.status_handlers`  GET /health, /stats, /metrics, /jobs/{job_id}, /openapi.json
- :mod:`frontend.openapi`        the OpenAPI 3 document
- :mod:`frontend.app`            make_app() and the HTTP server's limits
- :mod:`frontend.lifecycle`      serve(): start, SIGTERM drain, stop
- :mod:`frontend.__main__`       main(): settings, logging, exit status
"""
