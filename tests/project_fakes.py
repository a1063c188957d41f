"""A fake Bitbucket Cloud REST 2.0 server (real HTTP on 127.0.0.1) for the project template's Lambda tests.

It keeps state (workspace, projects, repositories, commits, variables, environments, pipeline runs), records
every request with its decoded body, answers CloudFormation custom-resource responses on ``/cfn-response``,
and can be told to fail: ``fail[(METHOD, path)] = [status, ...]`` answers those statuses first, in order.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WORKSPACE_UUID = "{11111111-2222-3333-4444-555555555555}"


class FakeBitbucket:
    """State of the fake server; ``url`` is the API root, ``cfn_url`` the CloudFormation response URL."""

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace
        self.projects: dict[str, dict] = {}
        self.repositories: dict[str, dict] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.cfn_responses: list[dict] = []
        self.fail: dict[tuple[str, str], list[int]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_port}/2.0"
        self.cfn_url = f"http://127.0.0.1:{self.server.server_port}/cfn-response"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def uuid(self) -> str:
        return f"{{{next(self._ids):08d}-0000-4000-8000-000000000000}}"

    # -- routing ------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path, body))
            queued = self.fail.get((method, path))
            if queued:
                return queued.pop(0), {"type": "error", "error": {"message": "injected failure"}}
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        ws = re.escape(self.workspace)
        if path == "/cfn-response" and method == "PUT":
            self.cfn_responses.append(body)
            return 200, None
        if path == f"/2.0/workspaces/{self.workspace}" and method == "GET":
            return 200, {"slug": self.workspace, "uuid": WORKSPACE_UUID}
        if m := re.fullmatch(rf"/2\.0/workspaces/{ws}/projects/?([A-Z0-9_]*)", path):
            return self._project(method, m.group(1), body)
        if m := re.fullmatch(rf"/2\.0/repositories/{ws}/([a-z0-9-]+)(/.*)?", path):
            return self._repository(method, m.group(1), m.group(2) or "", body)
        return 404, {"error": {"message": f"no route {method} {path}"}}

    def _project(self, method: str, key: str, body: Any) -> tuple[int, Any]:
        if method == "GET":
            return (200, self.projects[key]) if key in self.projects else (404, {"error": {}})
        if method == "POST" and not key:
            self.projects[body["key"]] = {**body, "uuid": self.uuid()}
            return 201, self.projects[body["key"]]
        if method == "DELETE":
            return (204, None) if self.projects.pop(key, None) else (404, {"error": {}})
        return 405, {}

    def _repository(self, method: str, slug: str, rest: str, body: Any) -> tuple[int, Any]:
        repo = self.repositories.get(slug)
        if not rest:
            if method == "POST":
                if repo or body.get("project", {}).get("key") not in self.projects:
                    return 400, {"error": {"message": "exists or no such project"}}
                self.repositories[slug] = repo = {"uuid": self.uuid(), "slug": slug, "body": body, "commits": []}
                repo.update(variables={}, environments={}, pipelines_enabled=False, runs=[])
                return 200, {"uuid": repo["uuid"], "slug": slug}
            if method == "DELETE":
                return (204, None) if self.repositories.pop(slug, None) else (404, {"error": {}})
            return (200, {"uuid": repo["uuid"], "slug": slug}) if repo else (404, {"error": {}})
        if repo is None:
            return 404, {"error": {"message": f"no repository {slug}"}}
        if rest == "/refs/branches/main":
            return (200, {"name": "main"}) if repo["commits"] else (404, {"error": {}})
        if rest == "/src" and method == "POST":
            repo["commits"].append(body)
            return 201, None
        if rest == "/pipelines_config" and method == "PUT":
            repo["pipelines_enabled"] = body["enabled"]
            return 200, body
        if rest == "/pipelines" and method == "POST":
            run = {"uuid": self.uuid(), "build_number": len(repo["runs"]) + 1, **body}
            repo["runs"].append(run)
            return 201, run
        if rest == "/environments":
            if method == "POST":
                environment = {"uuid": self.uuid(), "name": body["name"], "variables": {}}
                repo["environments"][environment["uuid"]] = environment
                return 201, environment
            return 200, {"values": [{"uuid": e["uuid"], "name": e["name"]} for e in repo["environments"].values()]}
        if m := re.fullmatch(r"/deployments_config/environments/(\{[^}]+\})/variables(/.*)?", rest):
            environment = repo["environments"][m.group(1)]
            return self._variables(environment["variables"], method, m.group(2), body)
        if m := re.fullmatch(r"/pipelines_config/variables(/.*)?", rest):
            return self._variables(repo["variables"], method, m.group(1), body)
        return 404, {"error": {"message": f"no route {method} {rest}"}}

    def _variables(self, variables: dict, method: str, item: str | None, body: Any) -> tuple[int, Any]:
        if method == "GET":
            values = [{"uuid": v["uuid"], "key": k, "secured": v["secured"]} for k, v in variables.items()]
            return 200, {"values": values}
        if method == "POST" and not item:
            if body["key"] in variables:
                return 409, {"error": {"message": "exists"}}
            variables[body["key"]] = {**body, "uuid": self.uuid()}
            return 201, variables[body["key"]]
        if method == "PUT" and item:
            key = next(k for k, v in variables.items() if v["uuid"] == item[1:])
            variables[key] = {**body, "uuid": variables[key]["uuid"]}
            return 200, variables[key]
        return 405, {}


def _decode(content_type: str, data: bytes) -> Any:
    if not data:
        return None
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + data
        )
        return {
            part.get_param("name", header="content-disposition"): part.get_content() for part in message.iter_parts()
        }
    return json.loads(data)


def _handler(fake: FakeBitbucket) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/cfn-response" and self.headers["Authorization"] != "Bearer test-token":
                status, answer = 401, {"error": {"message": "bad credentials"}}
            else:
                body = _decode(self.headers.get("Content-Type", ""), data)
                status, answer = fake.handle(self.command, urllib.parse.unquote(self.path), body)
            payload = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if status == 429:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args) -> None:
            pass

    return Handler
