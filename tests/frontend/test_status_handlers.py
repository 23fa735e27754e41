"""GET /health, /stats, /jobs/{job_id}, /openapi.json, and the JSON 404/405 answers."""

from __future__ import annotations

from typing import Any, ClassVar

from tests.frontend.http_case import FrontendTestCase


class HealthTest(FrontendTestCase):

    def test_ok_with_a_loaded_worker(self):
        response = self.fetch("/health")
        self.assertEqual(self.json_of(response), {
            "status": "ok", "queue_size": 0, "segmentation_ready": True, "engine": "schp",
            "workers": 1})

    def test_worker_alive_but_model_not_loaded(self):
        self.stub.add_worker("w0", takes_jobs=False, engine="schp", model_loaded=False)
        body = self.json_of(self.fetch("/health"))
        self.assertEqual((body["status"], body["segmentation_ready"]), ("ok", False))

    def test_degraded_without_live_workers(self):
        self.stub.remove_worker("w0")
        response = self.fetch("/health", raise_error=False)
        self.assertEqual(response.code, 503)
        body = self.json_of(response)
        self.assertEqual((body["status"], body["workers"], body["segmentation_ready"]),
                         ("degraded", 0, False))
        self.assertIn("worker", body["detail"])


class StatsTest(FrontendTestCase):

    def test_passes_the_broker_stats_through(self):
        self.stub.submit("queued-1")
        body = self.json_of(self.fetch("/stats"))
        self.assertEqual(set(body), set(self.stub.stats()))   # every key, none added
        for key in ("queue_max", "queue_current", "workers", "jobs_processed", "uptime_sec",
                    "in_flight", "failed", "delivered", "retried", "dead_lettered", "per_worker"):
            self.assertIn(key, body)
        self.assertEqual((body["queue_max"], body["queue_current"], body["accepted"]), (100, 1, 1))
        self.assertEqual(body["per_worker"]["w0"]["engine"], "schp")


class JobsTest(FrontendTestCase):

    def test_known_job_record_without_internal_paths(self):
        self.stub.add_worker("w1")
        self.stub.submit("job-9")
        self.stub.fail("job-9", "no_person", detail=f"nobody in {self.store.directory.parent}/job-9.jpg")
        body = self.json_of(self.fetch("/jobs/job-9"))
        record = self.stub.record("job-9")
        self.assertEqual((body["state"], body["reason"], body["worker"]), ("failed", "no_person", "w1"))
        self.assertEqual(body["detail"], "nobody in TEMP_FOLDER/job-9.jpg")
        self.assertEqual(body, {**record, "detail": "nobody in TEMP_FOLDER/job-9.jpg"})

    def test_unknown_job_is_404(self):
        self.assertIn("nope", self.assert_error(self.fetch("/jobs/nope", raise_error=False),
                                                404)["error"])

    def test_invalid_ids_are_400(self):
        for path in ("/jobs/a..b", "/jobs/%00x", "/jobs/%FF", "/jobs/" + "a" * 200, "/jobs/",
                     "/jobs/-x", "/jobs/a%2Fb"):
            with self.subTest(path):
                self.assert_error(self.fetch(path, raise_error=False), 400)
        self.assertEqual(self.sent("job"), [])


class SilentBrokerTest(FrontendTestCase):
    broker_timeout_s = 0.4

    def setUp(self):
        super().setUp()
        self.stub.pause()

    def test_health_is_degraded(self):
        response = self.fetch("/health", raise_error=False)
        self.assertEqual(response.code, 503)
        body = self.json_of(response)
        self.assertEqual(body["status"], "degraded")
        self.assertIn("did not answer", body["detail"])

    def test_stats_is_503(self):
        response = self.fetch("/stats", raise_error=False)
        self.assert_error(response, 503)
        self.assertIn("Retry-After", response.headers)

    def test_jobs_is_503(self):
        self.assert_error(self.fetch("/jobs/job-1", raise_error=False), 503)


class RoutingTest(FrontendTestCase):

    def test_unknown_paths_are_404_json(self):
        for method, path in (("GET", "/"), ("GET", "/nope"), ("POST", "/process/x"),
                             ("DELETE", "/jobs/a/b")):
            with self.subTest(method=method, path=path):
                body = None if method == "GET" or method == "DELETE" else b"x"
                response = self.fetch(path, method=method, body=body, raise_error=False)
                self.assert_error(response, 404)

    def test_wrong_methods_are_405_json(self):
        for method, path in (("POST", "/health"), ("DELETE", "/stats"), ("PUT", "/jobs/a"),
                             ("POST", "/openapi.json")):
            with self.subTest(method=method, path=path):
                body = b"x" if method in ("POST", "PUT") else None
                response = self.fetch(path, method=method, body=body, raise_error=False)
                self.assert_error(response, 405)
                self.assertEqual(response.headers["Allow"], "GET")


class OpenApiTest(FrontendTestCase):

    def test_document_lists_every_route_and_code(self):
        doc = self.json_of(self.fetch("/openapi.json"))
        self.assertTrue(doc["openapi"].startswith("3."))
        self.assertEqual(set(doc["paths"]), {"/process", "/health", "/stats", "/metrics",
                                             "/jobs/{job_id}", "/openapi.json"})
        self.assertEqual(doc["servers"][0]["url"], f"http://localhost:{self.server.port}")
        process = doc["paths"]["/process"]["post"]
        self.assertEqual(set(process["responses"]),
                         {"200", "202", "400", "401", "413", "415", "422", "503", "507"})
        form = process["requestBody"]["content"]["multipart/form-data"]["schema"]
        self.assertEqual(set(form["required"]), {"user_image", "user_id", "job_id"})
        for path_item in doc["paths"].values():
            for operation in path_item.values():
                for response in operation["responses"].values():
                    if "application/json" not in response["content"]:  # /metrics: text/plain
                        continue
                    ref = response["content"]["application/json"]["schema"].get("$ref")
                    if ref:
                        self.assertIn(ref.rsplit("/", 1)[1], doc["components"]["schemas"])
        self.assertNotIn("securitySchemes", doc["components"])


class OpenApiWithKeyTest(FrontendTestCase):
    settings_overrides: ClassVar[dict[str, Any]] = {"api_key": "k3y-for-docs"}

    def test_security_scheme_is_declared_but_not_the_key(self):
        response = self.fetch("/openapi.json")
        doc = self.json_of(response)
        self.assertEqual(doc["components"]["securitySchemes"]["ApiKey"]["name"], "X-API-Key")
        self.assertEqual(doc["paths"]["/health"]["get"]["security"], [])
        self.assertNotIn(b"k3y-for-docs", response.body)
