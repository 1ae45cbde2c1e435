"""make deploy-check: start every workload of the rendered overlays as a container and use it.

For each overlay (local, prod): analyse the rendered manifests (deploy/manifests.py; any problem fails
before a container starts), then run each Deployment, Job and CronJob container from the built image with
host networking, the manifest's uid/gid, a read-only root filesystem, no capabilities, and only its
volumes writable (emptyDir and PVC as host directories, Secret volumes as read-only files). The indexer
Job runs first; probes are driven like the kubelet (startup, then readiness and liveness with their
periods and thresholds); then a learner chat turn, a voice turn, an admin query, `kotoba index verify`
and a rolling update of the gateway (SIGTERM drains sessions to a second replica). For prod the cloud
endpoints point at local stand-ins (deploy/standins.py); nothing else in the rendered config changes.
Every container this run started is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.manifests import REPO, TEST_SECRETS, Analysis, Container, Workload, analyse  # noqa: E402

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
LABEL = "kotoba.deploy-check"
# Fixed ports the workloads listen on (host networking): all must be free before a run.
WORKLOAD_PORTS = (8080, 8081, 8000, 8765, 50051, 50052, 50053)
SECOND_GATEWAY_PORT = 8081
# Prod config keys deploy-check may override: endpoints (and what reaching them needs), nothing else.
PROD_OVERRIDES = {"AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
                  "KOTOBA_JWKS_URL", "KOTOBA_LIVE_BASE_URL", "SSL_CERT_FILE",
                  "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # IRSA's role credentials, in the cluster
SERVICE_HOSTS = ("gateway", "retrieval", "tools", "conversations", "dynalite")
READY_CAP_S = 240.0


class CheckFailed(Exception):
    pass


def log(msg: str) -> None:
    print(f"deploy-check {time.strftime('%H:%M:%S')} {msg}", flush=True)


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise CheckFailed(f"podman {' '.join(args[:3])}…: {result.stderr.strip()[-800:]}")
    return result


RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


@contextlib.contextmanager
def workload_ports_reserved(ports: tuple[int, ...]) -> Iterator[None]:
    """Keep the workloads' fixed ports out of ephemeral use while the check runs (restored after).

    With host networking any client socket on the host may be given one of them as its local port:
    50051-50053 lie inside Linux's default ephemeral range (32768-60999), and the workload then fails to
    bind (seen once: prod tools "Failed to bind to address 0.0.0.0:50052"). Needs root; without it the
    check runs as before, with that rare clash possible."""
    try:
        before = RESERVED_PORTS.read_text().strip()
        RESERVED_PORTS.write_text(",".join(filter(None, [before, *map(str, ports)])))
    except OSError as exc:
        log(f"workload ports not reserved from ephemeral use ({exc}); a rare bind clash stays possible")
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            RESERVED_PORTS.write_text(before or "\n")


def wait_until_ports_free(ports: tuple[int, ...], timeout_s: float = 90.0) -> None:
    """Between overlays: a workload of the last one that closed its clients' connections first leaves them in
    TIME_WAIT on its fixed port for up to 60 s, and the next overlay's workload could not bind it."""
    deadline = time.monotonic() + timeout_s
    busy = [port for port in ports if port_busy(port)]
    if busy:
        log(f"waiting for ports {busy} to be free (connections of the last run closing)")
    while busy and time.monotonic() < deadline:
        time.sleep(1)
        busy = [port for port in ports if port_busy(port)]
    if busy:
        raise CheckFailed(f"ports {busy} still in use {timeout_s:.0f} s after the last run")


def listened_on(ports: tuple[int, ...]) -> list[int]:
    """The ports a server on this host listens on (a `make run` stack, say): fail at once with their numbers.
    A port that is only bound (a client socket given it as its local port, a TIME_WAIT of the test suite's
    services that just stopped) frees itself, so the overlays wait for it instead (`wait_until_ports_free`)."""
    held = []
    for port in ports:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                held.append(port)
        except OSError:
            pass
    return held


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


class Run:
    def __init__(self, overlay: str, analysis: Analysis, image: str, dynalite_image: str, root: Path,
                 run_id: str) -> None:
        self.overlay, self.analysis, self.image, self.dynalite_image = overlay, analysis, image, dynalite_image
        self.root, self.run_id = root / overlay, run_id
        self.root.mkdir(parents=True, exist_ok=True)
        self.overrides: dict[str, str] = {}
        self.extra_mounts: list[tuple[str, str]] = []
        self.secrets = {k: dict(v) for k, v in TEST_SECRETS.items()}
        self.timings: dict[str, float] = {}
        self.cleanups: list = []
        self.issuer = None

    # ----------------------------------------------------------------- containers
    def image_for(self, c: Container) -> str:
        base = c.image.rsplit("/", 1)[-1].split(":")[0]
        return {"kotoba": self.image, "kotoba-dynalite": self.dynalite_image}.get(base, c.image)

    def volume_dir(self, w: Workload, instance: str, vname: str) -> tuple[Path, bool]:
        v = w.volumes[vname]
        if "persistentVolumeClaim" in v:
            path, ro = self.root / "pvc" / v["persistentVolumeClaim"]["claimName"], False
        elif "secret" in v:
            path, ro = self.root / instance / vname, True
            if not path.exists():
                path.mkdir(parents=True)
                data = self.secrets[v["secret"]["secretName"]]
                items = v["secret"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    f = path / item["path"]
                    f.write_text(data[item["key"]])
                    os.chown(f, 0, w.containers[-1].gid)
                    os.chmod(f, int(item.get("mode", v["secret"].get("defaultMode", 0o644))))
                os.chmod(path, 0o755)
            return path, ro
        else:  # emptyDir: one per pod, shared by its containers
            path, ro = self.root / instance / vname, False
        if not path.exists():
            path.mkdir(parents=True)
        return path, ro

    def podman_args(self, w: Workload, c: Container, instance: str, env: dict[str, str]) -> list[str]:
        args = ["--network", "host", "--label", f"{LABEL}={self.run_id}",
                "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
                "--user", f"{c.uid}:{c.gid}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        for host in SERVICE_HOSTS:  # cluster DNS: Service names reach the host network
            args += ["--add-host", f"{host}:127.0.0.1"]
        if c.read_only_root:
            args += ["--read-only", "--read-only-tmpfs=false"]
        for path, vname, ro in c.mounts:
            src, vro = self.volume_dir(w, instance, vname)
            if not vro and src.stat().st_uid != c.uid:
                os.chown(src, c.uid, c.gid)
            args += ["-v", f"{src}:{path}:{'ro' if ro or vro else 'rw'}"]
        for src, dst in self.extra_mounts:
            args += ["-v", f"{src}:{dst}:ro"]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        return args

    def env_of(self, c: Container) -> dict[str, str]:
        env = dict(c.env)
        if c.module:  # our image: the stand-in endpoints (prod) and the test secrets resolved at run time
            for key in self.overrides:
                if key == "SSL_CERT_FILE" and c.module != "services.gateway":
                    continue
                env[key] = self.overrides[key]
        secret = self.secrets["kotoba-secrets"]
        for k, v in list(env.items()):  # values analysed with placeholders get their run-time value
            if v == TEST_SECRETS["kotoba-secrets"].get(k):
                env[k] = secret[k]
        return env

    def start(self, w: Workload, c: Container, instance: str, *, detach: bool = True,
              env_extra: dict[str, str] | None = None) -> str:
        name = f"kdc-{self.overlay}-{instance}-{c.name}"
        env = {**self.env_of(c), **(env_extra or {})}
        args = self.podman_args(w, c, instance, env)
        podman("rm", "-f", name, check=False)
        if detach:
            podman("run", "-d", "--name", name, *args, self.image_for(c), *c.argv)
        else:
            started = time.monotonic()
            result = podman("run", "--name", name, *args, self.image_for(c), *c.argv, check=False, timeout=900)
            self.timings[f"{w.id}/{c.name}"] = time.monotonic() - started
            if result.returncode != 0:
                tail = (result.stdout + result.stderr).strip().splitlines()[-25:]
                raise CheckFailed(f"[{self.overlay}] {c.label()} exited {result.returncode}:\n  " + "\n  ".join(tail))
        return name

    def running(self, name: str) -> tuple[bool, int]:
        r = podman("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", name, check=False)
        running, _, code = r.stdout.strip().partition(" ")
        return running == "true", int(code or 0)

    def logs(self, name: str, lines: int = 25) -> str:
        r = podman("logs", "--tail", str(lines), name, check=False)
        return "\n  ".join((r.stdout + r.stderr).strip().splitlines()[-lines:])

    # --------------------------------------------------------------------- probes
    def probe(self, name: str, c: Container, probe: dict) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "grpc" in probe:
                import grpc
                from grpc_health.v1 import health_pb2, health_pb2_grpc

                port = probe["grpc"]["port"]
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    reply = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", "")), timeout=timeout)
                return reply.status == health_pb2.HealthCheckResponse.SERVING
            if "httpGet" in probe:
                port = probe["httpGet"]["port"]
                port = c.ports.get(port, port)
                url = f"http://127.0.0.1:{port}{probe['httpGet'].get('path', '/')}"
                with urllib.request.urlopen(url, timeout=timeout) as r:
                    return 200 <= r.status < 400
            if "tcpSocket" in probe:
                port = probe["tcpSocket"]["port"]
                socket.create_connection(("127.0.0.1", int(c.ports.get(port, port))), timeout).close()
                return True
            if "exec" in probe:
                r = podman("exec", name, *probe["exec"]["command"], check=False, timeout=timeout + 5)
                return r.returncode == 0
        except Exception:
            return False
        return False

    def await_ready(self, w: Workload, c: Container, name: str, started: float) -> float:
        """Startup probe, then readiness; liveness is probed alongside. Returns seconds to ready."""
        startup, ready_p, live_p = (c.probes.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe"))
        where = f"[{self.overlay}] {c.label()}"

        def alive_or_fail():
            running, code = self.running(name)
            if not running:
                raise CheckFailed(f"{where} exited {code} before it was ready:\n  {self.logs(name)}")

        if startup:
            time.sleep(float(startup.get("initialDelaySeconds", 0)))
            failures = 0
            while not self.probe(name, c, startup):
                alive_or_fail()
                failures += 1
                if failures >= int(startup.get("failureThreshold", 3)):
                    raise CheckFailed(f"{where}: startupProbe failed {failures} times; the kubelet would restart "
                                      f"it:\n  {self.logs(name)}")
                time.sleep(float(startup.get("periodSeconds", 10)))
        target = ready_p or startup or live_p
        if target is None:
            alive_or_fail()
            return time.monotonic() - started
        if not startup:
            time.sleep(float(target.get("initialDelaySeconds", 0)))
        live_failures, next_live = 0, time.monotonic() + float((live_p or {}).get("initialDelaySeconds", 0))
        while True:
            if self.probe(name, c, target):
                ready = time.monotonic() - started
                break
            alive_or_fail()
            if live_p and time.monotonic() >= next_live:
                if self.probe(name, c, live_p):
                    live_failures = 0
                else:
                    live_failures += 1
                    if live_failures >= int(live_p.get("failureThreshold", 3)):
                        raise CheckFailed(f"{where}: livenessProbe failed {live_failures} times before ready; "
                                          f"the kubelet would restart it:\n  {self.logs(name)}")
                next_live = time.monotonic() + float(live_p.get("periodSeconds", 10))
            if time.monotonic() - started > READY_CAP_S:
                raise CheckFailed(f"{where}: not ready after {READY_CAP_S:.0f}s:\n  {self.logs(name)}")
            time.sleep(min(float(target.get("periodSeconds", 10)), 1.0))
        if live_p and not self.probe(name, c, live_p):
            raise CheckFailed(f"{where}: ready but its livenessProbe fails")
        return ready

    def run_pod(self, w: Workload, instance: str, env_extra: dict[str, str] | None = None) -> dict[str, str]:
        """Sidecars and init containers in order, then the main containers; waits until all are ready."""
        names = {}
        for c in w.containers:
            if c.role == "init":
                log(f"[{self.overlay}] {c.label()}: running")
                self.start(w, c, instance, detach=False, env_extra=env_extra)
                continue
            started = time.monotonic()
            names[c.name] = self.start(w, c, instance, env_extra=env_extra if c.role == "main" else None)
            if c.role == "sidecar":
                self.timings[f"{w.id}/{c.name}"] = self.await_ready(w, c, names[c.name], started)
            else:
                names[c.name + "@started"] = str(started)
        for c in w.containers:
            if c.role == "main":
                t = self.await_ready(w, c, names[c.name], float(names.pop(c.name + "@started")))
                self.timings[f"{w.id}/{c.name}" + ("" if instance == w.name else f" ({instance})")] = t
                log(f"[{self.overlay}] {c.label()}: ready in {t:.1f}s")
        return names

    def run_job(self, w: Workload) -> None:
        for c in w.containers:
            log(f"[{self.overlay}] {c.label()}: running to completion")
            self.start(w, c, w.name, detach=False)
            log(f"[{self.overlay}] {c.label()}: completed in {self.timings[f'{w.id}/{c.name}']:.1f}s")

    def cleanup(self) -> None:
        ids = podman("ps", "-aq", "--filter", f"label={LABEL}={self.run_id}", check=False).stdout.split()
        if ids:
            podman("rm", "-f", "-t", "2", *ids, check=False)
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:  # clean-up must go on
                log(f"clean-up: {exc}")
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------- the run
def prepare_prod(run: Run) -> None:
    from deploy.standins import FakeBedrock, Issuer, Moto

    cfg = run.analysis.workload("gateway").containers[-1].env
    moto = Moto()
    run.cleanups.append(moto.close)
    bedrock = FakeBedrock()
    run.cleanups.append(bedrock.close)
    issuer = Issuer(cfg["KOTOBA_JWT_ISSUER"], cfg["KOTOBA_JWT_AUDIENCE"])
    run.cleanups.append(issuer.close)
    run.issuer = issuer
    tls = run.root / "live-tls"
    tls.mkdir(parents=True)
    live_env = {**os.environ, "KOTOBA_LIVE_ADDR": "127.0.0.1:8765", "KOTOBA_LIVE_CA_FILE": str(tls / "ca.pem"),
                "KOTOBA_LIVE_API_KEY": run.secrets["kotoba-secrets"]["GEMINI_API_KEY"], "KOTOBA_ENV": "local"}
    live = subprocess.Popen([sys.executable, "-m", "services.local_live"], cwd=REPO, env=live_env,
                            stdout=open(run.root / "live.log", "w"), stderr=subprocess.STDOUT)
    run.cleanups.append(lambda: (live.terminate(), live.wait(10)))
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", 8765), 0.5).close()
            break
        except OSError:
            if live.poll() is not None or time.monotonic() > deadline:
                raise CheckFailed("the local Live engine (stand-in for Gemini) did not start: "
                                  + (run.root / "live.log").read_text()[-800:]) from None
            time.sleep(0.3)
    os.chmod(tls, 0o755)
    os.chmod(tls / "ca.pem", 0o644)
    run.extra_mounts.append((str(tls / "ca.pem"), "/etc/kotoba-deploy-check/live-ca.pem"))
    run.overrides = {
        "AWS_ENDPOINT_URL_DYNAMODB": moto.endpoint, "AWS_ENDPOINT_URL_S3": moto.endpoint,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.endpoint, "KOTOBA_JWKS_URL": issuer.jwks_url,
        "KOTOBA_LIVE_BASE_URL": "https://127.0.0.1:8765", "SSL_CERT_FILE": "/etc/kotoba-deploy-check/live-ca.pem",
        "AWS_ACCESS_KEY_ID": "deploy-check", "AWS_SECRET_ACCESS_KEY": "deploy-check",
    }
    assert set(run.overrides) <= PROD_OVERRIDES
    run.secrets["kotoba-secrets"]["KOTOBA_GATEWAY_SERVICE_TOKEN"] = issuer.token("kotoba-gateway", ("service",))
    # What the operator provisions before the first deploy (Terraform in a real account): the tables, the
    # dictionary and the snapshot bucket. Done with the image's own tools, as the indexer's account.
    import boto3

    bucket = cfg["KOTOBA_SNAPSHOT_URI"].removeprefix("s3://").split("/", 1)[0]
    boto3.client("s3", endpoint_url=moto.endpoint, region_name=cfg["AWS_REGION"], aws_access_key_id="x",
                 aws_secret_access_key="x").create_bucket(Bucket=bucket)
    # The dictionary is the small test fixture (data/seed/fixture): the operator's data, not config, and it
    # keeps the Titan stand-in and moto fast. The local overlay's Job loads the full seed itself.
    env = {**os.environ, **run.env_of(run.analysis.workload("indexer-build").containers[-1]),
           "KOTOBA_DATA_DIR": str(run.root / "provision"), "PATH": os.environ.get("PATH", ""),
           "PYTHONPATH": str(REPO)}
    for argv in (["db", "create-tables"], ["seed", "load", "--fixture", "--no-progress"]):
        log(f"[prod] provisioning: kotoba {' '.join(argv)} (stand-in for the operator's Terraform)")
        r = subprocess.run([sys.executable, "-m", "services.cli", *argv], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            raise CheckFailed(f"[prod] provisioning kotoba {' '.join(argv)} failed:\n{r.stderr[-1500:]}")


def local_token(run: Run, user: str, roles: tuple[str, ...] = ()) -> str:
    from services.common.auth import mint_token
    from services.common.config import CommonConfig

    env = run.env_of(run.analysis.workload("gateway").containers[-1])
    return mint_token(CommonConfig.from_env(env).auth, user, roles)


def token(run: Run, user: str, roles: tuple[str, ...] = ()) -> str:
    return run.issuer.token(user, roles) if run.issuer else local_token(run, user, roles)


def voice_pcm() -> bytes:
    """A short spoken question, 16 kHz PCM16 (espeak-ng + sox, as the voice tests make theirs)."""
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "q.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-w", str(Path(d) / "raw.wav"), "What does taberu mean?"],
                       check=True, capture_output=True)
        subprocess.run(["sox", str(Path(d) / "raw.wav"), "-r", "16000", "-c", "1", "-b", "16", str(wav)],
                       check=True, capture_output=True)
        from services.gateway.client import read_wav_16k

        return read_wav_16k(wav)


async def drive(run: Run, second_gateway: str) -> dict[str, str]:
    from services.gateway.client import ChatClient

    results = {}
    learner = token(run, "demo-n5")
    url = "ws://127.0.0.1:8080/v1/chat"
    async with await ChatClient.open(url, learner) as chat:
        turn = await chat.ask("What does 食べる mean?")
        if turn.errors or not turn.answer:
            raise CheckFailed(f"[{run.overlay}] chat turn through the gateway failed: {turn.errors or 'no answer'}")
        results["chat"] = f"{turn.answer[:70]!r}… ({len(turn.answer)} chars, tools {turn.tools})"
        session_id = chat.session["session_id"]
    # Voice: the image leaves out the voice extra, so what the engine can do decides the outcome; the
    # gateway must answer either with speech or with a typed error, never hang or drop the socket.
    async with await ChatClient.open(url, learner) as chat:
        try:
            await chat.start(mode="audio", language="en")
        except RuntimeError as exc:  # the client raises on a typed `error` frame: code and message
            results["voice"] = f"typed error at start: {exc}"
        else:
            try:
                voice = await chat.say(voice_pcm(), wait_s=60)
            except Exception as exc:
                raise CheckFailed(f"[{run.overlay}] voice turn: no answer and no typed error ({exc!r})") from None
            if not (voice.audio or voice.transcripts or voice.errors):
                raise CheckFailed(f"[{run.overlay}] voice turn: neither speech nor a typed error")
            results["voice"] = (f"{len(voice.audio)} bytes of speech, heard {voice.transcript('user')!r}"
                                if voice.audio else f"typed error {[e.get('code') for e in voice.errors]}")
    admin = token(run, "deploy-check-admin", ("admin",))
    req = urllib.request.Request("http://127.0.0.1:8080/api/v1/admin/chat/conversations?page_size=5",
                                 headers={"Authorization": f"Bearer {admin}"})
    def get():
        with urllib.request.urlopen(req, timeout=15) as r:
            return json.loads(r.read())

    try:
        body = await asyncio.to_thread(get)
    except urllib.error.HTTPError as exc:
        raise CheckFailed(f"[{run.overlay}] admin query: HTTP {exc.code} {exc.read()[:300]!r}") from None
    results["admin"] = f"{len(body.get('conversations', []))} conversations listed"
    results["session"] = session_id
    return results


async def rolling_update(run: Run, gw_a: str, pre_stop: list[str] | None, grace_s: int) -> str:
    """A learner mid-conversation on replica A; A gets preStop + SIGTERM; the learner resumes on B."""
    from services.gateway.client import ChatClient

    learner = token(run, "demo-n4")
    a = await ChatClient.open("ws://127.0.0.1:8080/v1/chat", learner)
    first = await a.ask("What does 水 mean?")
    if first.errors:
        raise CheckFailed(f"[{run.overlay}] rolling update: first turn failed: {first.errors}")
    session_id = a.session["session_id"]
    if pre_stop:
        podman("exec", gw_a, *pre_stop, check=False, timeout=60)
    stopped_at = time.monotonic()
    podman("kill", "--signal", "TERM", gw_a)
    told = None
    try:
        while told is None:
            frame = await a.recv_json(wait_s=grace_s)
            if frame.get("type") == "error" and frame.get("code") == "going_away":
                told = frame
    except Exception:
        pass
    await a.close()
    if told is None:
        raise CheckFailed(f"[{run.overlay}] rolling update: the draining gateway never sent going_away")
    async with await ChatClient.open(f"ws://127.0.0.1:{SECOND_GATEWAY_PORT}/v1/chat", learner) as b:
        session = await b.start(resume=session_id)
        if not session.get("resumed"):
            raise CheckFailed(f"[{run.overlay}] rolling update: the other replica did not resume the session")
        again = await b.ask("And 火?")
        if again.errors or not again.answer:
            raise CheckFailed(f"[{run.overlay}] rolling update: no answer after resuming: {again.errors}")
    while run.running(gw_a)[0]:
        if time.monotonic() - stopped_at > grace_s:
            raise CheckFailed(f"[{run.overlay}] rolling update: gateway still running after its "
                              f"{grace_s}s grace period: the kubelet would SIGKILL it")
        await asyncio.sleep(0.5)
    code = run.running(gw_a)[1]
    if code not in (0, 143):
        raise CheckFailed(f"[{run.overlay}] rolling update: gateway exited {code}:\n  {run.logs(gw_a)}")
    return f"going_away, resumed on the other replica, old one exited {code} after " \
           f"{time.monotonic() - stopped_at:.1f}s"


def check_overlay(run: Run) -> dict[str, str]:
    a = run.analysis
    if run.overlay == "prod":
        prepare_prod(run)
    results: dict[str, str] = {}
    deps = [w for w in a.workloads if w.kind == "Deployment"]
    support = [w for w in deps if not any(c.module for c in w.containers)]  # dynalite
    for w in support:
        run.run_pod(w, w.name)
    run.run_job(a.workload("indexer-build"))
    services = [w for w in deps if w not in support]
    with ThreadPoolExecutor(len(services)) as pool:
        pods = dict(zip([w.name for w in services], pool.map(lambda w: run.run_pod(w, w.name), services), strict=True))
    gateway = a.workload("gateway")
    # The second replica: with host networking it needs its own port (a pod would have its own IP).
    second = {"KOTOBA_GATEWAY_ADDR": f"0.0.0.0:{SECOND_GATEWAY_PORT}"}
    b_containers = [c for c in gateway.containers if c.role != "sidecar" or run.overlay != "local"]
    gw_b = Workload(gateway.kind, gateway.name, b_containers, gateway.volumes)
    for c in gw_b.containers:
        if c.role == "main":
            c_b = Container(**{**c.__dict__, "ports": {k: SECOND_GATEWAY_PORT for k in c.ports},
                               "probes": {k: v for k, v in c.probes.items()}})
            gw_b.containers = [x if x is not c else c_b for x in gw_b.containers]
    if run.overlay == "local":
        # Its sidecar engine is replica A's (same port on this host); B trusts A's CA through the shared file.
        gw_b.volumes = dict(gateway.volumes)
        src = run.root / "gateway" / "data"
        (run.root / "gateway-b").mkdir(exist_ok=True)
        if not (run.root / "gateway-b" / "data").exists():
            (run.root / "gateway-b" / "data").symlink_to(src)
    run.run_pod(gw_b, "gateway-b", env_extra=second)
    for cronjob in ("indexer-update", "indexer-verify"):
        run.run_job(a.workload(cronjob))
    results["index verify"] = "CronJob indexer-verify: exit 0"
    results.update(asyncio.run(drive(run, "gateway-b")))
    results["rolling update"] = asyncio.run(rolling_update(run, pods["gateway"]["gateway"], gateway.containers[-1]
                                                           .pre_stop, gateway.grace_s))
    not_run = [w.id for w in a.workloads if w.kind == "CronJob" and w.name not in ("indexer-update",
                                                                                     "indexer-verify")]
    if not_run:
        results["not started"] = ", ".join(not_run) + " (on demand; rolls LATEST back)"
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("overlays", nargs="*", default=["local", "prod"])
    p.add_argument("--image", default=os.environ.get("KOTOBA_IMAGE", "localhost/kotoba:dev"))
    p.add_argument("--dynalite-image", default=os.environ.get("KOTOBA_DYNALITE_IMAGE", "localhost/kotoba-dynalite:dev"))
    p.add_argument("--analyse-only", action="store_true", help="manifest analysis only, no containers")
    args = p.parse_args(argv)

    analyses = {}
    for overlay in args.overlays:
        a = analyse(REPO / "k8s" / "overlays" / overlay)
        for problem in a.problems:
            print(f"deploy-check [{overlay}] FAIL {problem}", file=sys.stderr)
        analyses[overlay] = a
    if any(a.problems for a in analyses.values()):
        return 1
    log("manifest analysis: no problems in " + ", ".join(args.overlays))
    if args.analyse_only:
        return 0
    if shutil.which("podman") is None:
        print("deploy-check: podman is missing: run `make image` first", file=sys.stderr)
        return 1
    for image in (args.image, *([args.dynalite_image] if "local" in args.overlays else [])):
        if podman("image", "exists", image, check=False).returncode != 0:
            print(f"deploy-check: image {image} not found: run `make image` first", file=sys.stderr)
            return 1
    held = listened_on(WORKLOAD_PORTS)
    if held:
        print(f"deploy-check: ports {held} are in use on this host; the workloads listen on fixed ports with "
              "host networking. Stop what holds them (`ss -ltnp`) and re-run.", file=sys.stderr)
        return 1

    run_id = uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix="kotoba-deploy-check-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    current: list[Run] = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    failed = False
    report = {}
    with workload_ports_reserved(WORKLOAD_PORTS):
        try:
            for overlay, a in analyses.items():
                run = Run(overlay, a, args.image, args.dynalite_image, root, run_id)
                current.append(run)
                started = time.monotonic()
                try:
                    wait_until_ports_free(WORKLOAD_PORTS)
                    results = check_overlay(run)
                    results["wall time"] = f"{time.monotonic() - started:.0f}s"
                    report[overlay] = {"results": results, "timings": run.timings}
                    log(f"[{overlay}] PASS")
                except CheckFailed as exc:
                    print(f"deploy-check FAIL {exc}", file=sys.stderr)
                    failed = True
                    break
                except Exception as exc:  # a step broke in an unexpected way: still a named failure
                    import traceback

                    traceback.print_exc()
                    print(f"deploy-check FAIL [{overlay}] {exc!r}", file=sys.stderr)
                    failed = True
                    break
                finally:
                    run.cleanup()
                    current.remove(run)
        except KeyboardInterrupt:
            failed = True
        finally:
            for run in current:
                run.cleanup()
            shutil.rmtree(root, ignore_errors=True)
    for overlay, r in report.items():
        print(f"\n[{overlay}]")
        for k, v in r["results"].items():
            print(f"  {k}: {v}")
        for k, v in r["timings"].items():
            print(f"  ready/completed {k}: {v:.1f}s")
    out = os.environ.get("KOTOBA_DEPLOY_CHECK_REPORT")
    if out:
        Path(out).write_text(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    threading.current_thread().name = "deploy-check"
    sys.exit(main())
