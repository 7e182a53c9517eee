"""A small Hugging Face Hub on 127.0.0.1: enough of its HTTP API for huggingface_hub's `whoami`,
`create_repo`, `repo_info`, `create_branch` and `create_commit` (read from hf_api.py, lfs.py and
_commit_api.py of huggingface_hub 2.x) to run against it unchanged.

The upload path it serves, with Xet turned off (`HF_HUB_DISABLE_XET=1`) so that large files take
the plain Git LFS route: `POST /api/validate-yaml` (the card's metadata), `POST .../preupload/REV`
(files of `lfs_min_size` bytes or more are `lfs`, smaller ones `regular`), the LFS batch API with
basic PUT transfer and a verify call, then the NDJSON `POST .../commit/REV`, where regular files
arrive base64-encoded and LFS files by their SHA-256. Every request is recorded (method, path,
headers, body) and every commit is applied to the repository's files, so tests can compare what
arrived with the folder that was pushed.
"""

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

USER = "tester"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Commit:
    repo_id: str
    revision: str
    summary: str
    files: dict[str, bytes]
    lfs_paths: set[str]


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})


class FakeHub:
    """Start with `with FakeHub(token) as hub:`; `hub.endpoint` is what HF_ENDPOINT should be."""

    def __init__(self, token: str, lfs_min_size: int = 10_000) -> None:
        self.token = token
        self.lfs_min_size = lfs_min_size
        self.requests: list[Recorded] = []
        self.repos: dict[str, Repo] = {}
        self.commits: list[Commit] = []
        self.lfs_objects: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]

    # Each route returns (status, JSON body, extra headers).
    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, object, dict[str, str]]:
        if path.startswith("/api/") and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "Invalid credentials in Authorization header"}, {}
        for pattern, route_method, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if match and method == route_method:
                with self._lock:
                    return handler(body, *[group if group is None else unquote(group) for group in match.groups()])
        return 404, {"error": f"no route {method} {path}"}, {}

    def _routes(self):
        repo = r"([\w.-]+/[\w.-]+)"
        return [
            (r"/api/whoami-v2", "GET", self._whoami),
            (r"/api/repos/create", "POST", self._create_repo),
            (r"/api/validate-yaml", "POST", self._validate_yaml),
            (rf"/api/models/{repo}(?:/revision/([^/]+))?", "GET", self._repo_info),
            (rf"/api/models/{repo}/branch/([^/]+)", "POST", self._create_branch),
            (rf"/api/models/{repo}/preupload/([^/]+)", "POST", self._preupload),
            (rf"/{repo}\.git/info/lfs/objects/batch", "POST", self._lfs_batch),
            (r"/lfs-upload/([0-9a-f]{64})", "PUT", self._lfs_put),
            (r"/lfs-verify", "POST", self._lfs_verify),
            (rf"/api/models/{repo}/commit/([^/]+)", "POST", self._commit),
        ]

    def _whoami(self, body):
        account = {
            "type": "user",
            "name": USER,
            "orgs": [{"name": "test-org"}],
            "auth": {"type": "access_token", "accessToken": {"displayName": "ci-token", "role": "write"}},
        }
        return 200, account, {}

    def _create_repo(self, body):
        request = json.loads(body)
        repo_id = f"{request.get('organization') or USER}/{request['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.endpoint}/{repo_id}"}, {}
        self.repos[repo_id] = Repo(private=request.get("visibility") == "private")
        return 200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id}, {}

    def _validate_yaml(self, body):
        content = json.loads(body)["content"]
        front = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        metadata = yaml.safe_load(front.group(1)) if front else None
        if not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "no metadata"}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def _repo_info(self, body, repo_id, revision=None):
        if repo_id not in self.repos:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        return 200, {"id": repo_id, "private": self.repos[repo_id].private, "sha": "0" * 40}, {}

    def _create_branch(self, body, repo_id, branch):
        repo = self.repos[repo_id]
        if branch in repo.branches:
            return 409, {"error": "Reference already exists"}, {}
        repo.branches[branch] = dict(repo.branches["main"])
        return 200, {}, {}

    def _preupload(self, body, repo_id, revision):
        files = json.loads(body)["files"]
        modes = [
            {"path": f["path"], "uploadMode": "lfs" if f["size"] >= self.lfs_min_size else "regular", "shouldIgnore": False, "oid": None}
            for f in files
        ]
        return 200, {"files": modes}, {}

    def _lfs_batch(self, body, repo_id):
        request = json.loads(body)
        objects = []
        for obj in request["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs_objects:
                entry["actions"] = {
                    "upload": {"href": f"{self.endpoint}/lfs-upload/{obj['oid']}"},
                    "verify": {"href": f"{self.endpoint}/lfs-verify"},
                }
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, {}

    def _lfs_put(self, body, oid):
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": "content does not match its oid"}, {}
        self.lfs_objects[oid] = body
        return 200, {}, {}

    def _lfs_verify(self, body):
        request = json.loads(body)
        stored = self.lfs_objects.get(request["oid"])
        return (200, {}, {}) if stored is not None and len(stored) == request["size"] else (404, {"error": "not uploaded"}, {})

    def _commit(self, body, repo_id, revision):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        files, lfs_paths = {}, set()
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    return 422, {"error": f"LFS object of {value['path']} was never uploaded"}, {}
                files[value["path"]] = self.lfs_objects[value["oid"]]
                lfs_paths.add(value["path"])
        branch = self.repos[repo_id].branches.setdefault(revision, {})
        branch.update(files)
        self.commits.append(Commit(repo_id, revision, header["summary"], files, lfs_paths))
        oid = hashlib.sha1(body).hexdigest()
        return 200, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}, {}


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self._read_body()
            path = urlsplit(self.path).path
            headers = {key.lower(): value for key, value in self.headers.items()}
            hub.requests.append(Recorded(self.command, path, headers, body))
            status, payload, extra = hub.route(self.command, path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, *args) -> None:  # quiet: the test reads hub.requests instead
            pass

    return Handler
