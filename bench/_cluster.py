"""A real multi-node Ray cluster on this machine, for the integration test and the benchmark: a head node and
more nodes started by `ray start` (each its own raylet, object store and workers, as on separate machines),
every port chosen free, everything under one temporary directory, stopped by process id.

    with LocalCluster(nodes=2, cpus_per_node=1) as cluster:
        cluster.address            # what scale.ray_address takes
        cluster.worker_processes(1)   # the Ray worker processes of node 1 (not the head), e.g. to kill one

Authentication: the cluster runs with Ray's token authentication and a token of its own (RAY_AUTH_MODE=token,
RAY_AUTH_TOKEN): a driver needs `cluster.env` in its environment (the stage processes of the test get it). It
neither reads nor writes ~/.ray/auth_token, the token a Ray started by `ray.init()` shares with every Ray of
the user.

Address: the nodes use the loopback 127.0.0.2. Ray 2.60 rewrites 127.0.0.1 (and "localhost") to the machine's
network address when it builds a multi-node cluster (ray._private.services.resolve_ip_for_localhost), and
refuses a multi-node cluster on 127.0.0.1 otherwise (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0); 127.0.0.2 is the
same loopback interface and is kept as given. Ray's servers still listen on every interface (the token keeps others out).

Stopping: each `ray start --block` is the parent of its node's processes (GCS, raylet, agents, workers); the
cluster stops by terminating those process trees, then killing what is left, by pid. Never `ray stop`, which
stops every Ray on the machine, other people's too.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

IP = "127.0.0.2"
RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ClusterError(RuntimeError):
    pass


class LocalCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 256, timeout: float = 180):
        self.n_nodes, self.cpus, self.store, self.timeout = nodes, cpus_per_node, object_store_mb, timeout
        self.dir = Path(tempfile.mkdtemp(prefix="fkstudy-ray-"))
        self.procs: list[subprocess.Popen] = []
        self.node_ports: list[int] = []          # each node's --node-manager-port (names its raylet)
        self.port, self._client_port, self._dashboard_port = free_ports(3)   # the address is known before start()
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

    # ------------------------------------------------------------------ start / stop
    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def start_in_background(self) -> LocalCluster:
        """start() in a thread (the nodes come up while the caller works); `ready()` waits for them."""
        import threading

        self._error: BaseException | None = None

        def target():
            try:
                self.start()
            except BaseException as exc:  # re-raised by ready()
                self._error = exc

        self._starting = threading.Thread(target=target, daemon=True)
        self._starting.start()
        return self

    def ready(self) -> LocalCluster:
        if getattr(self, "_starting", None) is not None:
            self._starting.join()
            self._starting = None
            if self._error is not None:
                raise self._error
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{IP}:{self.port}"

    def _node_args(self) -> list[str]:
        p = free_ports(7)
        self.node_ports.append(p[0])
        return ["--node-ip-address", IP, "--num-cpus", str(self.cpus), "--object-store-memory",
                str(self.store * 2 ** 20), "--node-manager-port", str(p[0]), "--object-manager-port", str(p[1]),
                "--runtime-env-agent-port", str(p[2]), "--dashboard-agent-listen-port", str(p[3]),
                "--dashboard-agent-grpc-port", str(p[4]), "--metrics-export-port", str(p[5]),
                "--temp-dir", str(self.dir), "--disable-usage-stats", "--block"]

    def _spawn(self, args: list[str], name: str) -> None:
        log = open(self.dir / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen([RAY, "start", *args], stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True,
                                           env={**os.environ, **self.env}))
        log.close()

    def start(self) -> None:
        self._spawn(["--head", "--port", str(self.port), "--ray-client-server-port", str(self._client_port),
                     "--include-dashboard", "false", "--dashboard-port", str(self._dashboard_port),
                     *self._node_args()], "head")
        self.wait_nodes(1)
        for i in range(1, self.n_nodes):
            self._spawn(["--address", self.address, *self._node_args()], f"node{i}")
        self.wait_nodes(self.n_nodes)

    def alive_nodes(self) -> int:
        out = subprocess.run([RAY, "status", "--address", self.address], capture_output=True, text=True, timeout=60,
                             env={**os.environ, **self.env})
        if out.returncode:
            return 0
        active = out.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if "node_" in line)

    def wait_nodes(self, n: int) -> None:
        t0 = time.time()
        while time.time() - t0 < self.timeout:
            dead = [p.args[2] for p in self.procs if p.poll() is not None]
            if dead:
                raise ClusterError(f"`ray start` exited ({dead}); logs in {self.dir}:\n{self.logs()}")
            if self.alive_nodes() >= n:
                return
            time.sleep(1)
        raise ClusterError(f"{n} Ray node(s) not up after {self.timeout:.0f} s; logs in {self.dir}:\n{self.logs()}")

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-chars:]}" for f in sorted(self.dir.glob("*.log")))

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster: the `ray start` trees, and anything naming its directory."""
        found: dict[int, psutil.Process] = {}
        for p in self.procs:
            try:
                root = psutil.Process(p.pid)
                for q in (root, *root.children(recursive=True)):
                    found[q.pid] = q
            except psutil.NoSuchProcess:
                pass
        for q in psutil.process_iter(["cmdline"]):
            if str(self.dir) in " ".join(q.info["cmdline"] or []):
                found.setdefault(q.pid, q)
        return list(found.values())

    def stop(self) -> None:
        if getattr(self, "_starting", None) is not None:
            self._starting.join()
        procs = self.processes()
        for q in procs:
            try:
                q.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=5)
        for q in alive:
            try:
                q.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=10)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ inspecting a node
    def raylet(self, node: int) -> psutil.Process:
        flag = f"--node_manager_port={self.node_ports[node]}"
        for q in self.processes():
            try:
                cmd = q.cmdline()
            except psutil.Error:
                continue
            if cmd and Path(cmd[0]).name == "raylet" and flag in cmd:
                return q
        raise ClusterError(f"no raylet for node {node} ({flag})")

    def worker_processes(self, node: int, marker: str = "MapWorker") -> list[psutil.Process]:
        """Ray worker processes of node `node` whose title holds `marker` (Ray Data's actors: `ray::MapWorker(...)`)."""
        out = []
        for q in self.raylet(node).children(recursive=True):
            try:
                if marker in " ".join(q.cmdline()):
                    out.append(q)
            except psutil.Error:
                continue
        return out

