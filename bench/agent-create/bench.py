#!/usr/bin/env python3
"""bench.py: the timing loop of bench/agent-create/run.sh (see BENCHMARKS.md); stdlib only.

Against one running hci-agent and the private libvirt instance it drives, it creates test-guest VMs
one at a time, alternating two methods in the same run:

  agent  PUT /agent/v1/desired with a new generation that adds one VM on a qcow2 overlay of the test
         guest image; "to running" ends when GET /agent/v1/report shows the VM running, "to booted"
         when GET /agent/v1/vms/ID/console shows HCI-GUEST-BOOTED (both polled every --poll-ms).
         Then a new generation without the VM, waited for (not measured).
  raw    one `virsh -t` process running "vol-create (the agent's volume XML: a qcow2 overlay over
         the same verified image file); define (the agent's own domain XML, from `virsh dumpxml
         --inactive` of the warm-up VM: name, disk and console log replaced, uuid and hci metadata
         dropped); start; domstate"; "to running" ends when that process has printed "running",
         "to booted" when the console log file shows HCI-GUEST-BOOTED. Then destroy, undefine,
         vol-delete. The per-command times of `virsh -t` also give the libvirt calls alone, without
         virsh's process start and connection.

One unmeasured warm-up of each method first (the agent's imports the image and provides the domain
XML). The measured order alternates per iteration (agent first, then raw first, ...) so slow drift of
the machine's load hits both methods alike. Prints the report (markdown) on stdout; progress on
stderr.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import http.client
import urllib.parse
import xml.etree.ElementTree as ET

BOOTED = "HCI-GUEST-BOOTED"

# As agent/src/volumes/libvirt_xml.rs writes it for an image volume.
VOLUME_XML = """<volume type='file'>
  <name>{name}</name>
  <capacity unit='bytes'>{capacity}</capacity>
  <allocation unit='bytes'>0</allocation>
  <target>
    <format type='qcow2'/>
    <compat>1.1</compat>
  </target>
  <backingStore>
    <path>{backing}</path>
    <format type='qcow2'/>
  </backingStore>
</volume>
"""


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Failure(Exception):
    pass


# --- helpers -----------------------------------------------------------------------------------


_conns = {}


def request(method, url, body=None, timeout=30):
    """One request on a kept-alive connection per host (as a polling client would keep one): the
    polls then cost the agent and this process no TCP handshake each. Returns (status, body)."""
    u = urllib.parse.urlsplit(url)
    path = u.path + (f"?{u.query}" if u.query else "")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    for attempt in (1, 2):
        conn = _conns.get(u.netloc)
        if conn is None:
            conn = _conns[u.netloc] = http.client.HTTPConnection(u.netloc, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (http.client.HTTPException, OSError):
            # The server closed the kept-alive connection: one retry on a new one.
            conn.close()
            del _conns[u.netloc]
            if attempt == 2:
                raise


def virsh(uri, commands, timing=False, check=True):
    """Runs one virsh process with `commands` (';'-separated); returns (stdout, stderr)."""
    argv = ["virsh", "-q"] + (["-t"] if timing else []) + ["-c", uri, commands]
    out = subprocess.run(argv, capture_output=True, text=True)
    # virsh goes on after a failed command and exits with the status of the last one.
    if check and (out.returncode != 0 or "error:" in out.stderr):
        raise Failure(f"virsh {commands!r} failed ({out.returncode}): {out.stdout}{out.stderr}")
    return out.stdout, out.stderr


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def quantile(values, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def parse_metrics(text):
    """Prometheus text -> {'name{labels}': value} for the agent's counters and histogram sums."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


# --- the benchmark -----------------------------------------------------------------------------


class Bench:
    def __init__(self, a):
        self.a = a
        self.agent = a.agent_url.rstrip("/")
        self.uri = a.uri
        self.poll = a.poll_ms / 1000.0
        self.generation = self.held_generation()
        self.image_path = a.image
        self.image_sha = sha256_file(a.image)
        self.template = None  # the agent's domain XML (ElementTree root), from the warm-up
        self.backing = None  # the agent's verified copy of the image (the raw overlays use it too)
        self.raw_pool = f"bench-raw-{a.host_id}"
        self.raw_pool_dir = os.path.join(a.work, "raw-pool")
        self.raw_vm_dir = os.path.join(a.work, "raw-vms")
        self.results = {"agent": [], "raw": []}

    # agent ---------------------------------------------------------------------------------------

    def held_generation(self):
        status, body = request("GET", f"{self.agent}/agent/v1/desired")
        if status == 404:
            return 0
        if status != 200:
            raise Failure(f"GET desired: {status} {body[:200]!r}")
        return json.loads(body)["generation"]

    def desired(self, vm_id=None):
        self.generation += 1
        volumes, vms = [], []
        if vm_id is not None:
            vol = f"{vm_id}-boot"
            volumes.append({
                "id": vol,
                "pool": "default",
                "size_gib": 1,
                "source": {"image": {
                    "name": "test-guest",
                    "source": "file://" + self.image_path,
                    "format": "qcow2",
                    "sha256": self.image_sha,
                }},
            })
            vms.append({
                "id": vm_id,
                "name": vm_id,
                "vcpus": self.a.vcpus,
                "memory_mib": self.a.memory_mib,
                "arch": "x86_64",
                "firmware": self.a.firmware,
                "disks": [vol],
                "nics": [],
                "power": "running",
                "reboot_count": 0,
                "oem_strings": [f"hci.name={vm_id}", "hci.heartbeat=0"],
            })
        # Volumes the host holds besides the VM's (empty, unused): what a pass costs on a fuller host.
        volumes += [{"id": f"idle-{k}", "pool": "default", "size_gib": 1, "source": "empty"}
                    for k in range(self.a.extra_volumes)]
        return {"host_id": self.a.host_id, "generation": self.generation, "volumes": volumes, "vms": vms}

    def put(self, desired):
        status, body = request("PUT", f"{self.agent}/agent/v1/desired", desired)
        if status != 200:
            raise Failure(f"PUT desired generation {desired['generation']}: {status} {body[:300]!r}")

    def report(self):
        status, body = request("GET", f"{self.agent}/agent/v1/report")
        if status != 200:
            raise Failure(f"GET report: {status} {body[:300]!r}")
        return json.loads(body)

    def metrics(self):
        status, body = request("GET", f"{self.agent}/metrics")
        return parse_metrics(body.decode()) if status == 200 else {}

    def deadline(self):
        return time.perf_counter() + self.a.timeout

    def agent_create(self, vm_id):
        """Returns (to_running_s, to_booted_s, details); the VM is left running."""
        desired = self.desired(vm_id)
        before = self.metrics()
        t0 = time.perf_counter()
        self.put(desired)
        t_put = time.perf_counter() - t0
        end = self.deadline()
        polls = 0
        while True:
            r = self.report()
            polls += 1
            vm = next((v for v in r["vms"] if v["id"] == vm_id), None)
            if vm is not None and vm["state"] == "running":
                t_run = time.perf_counter() - t0
                converged = r.get("converged_generation") == desired["generation"]
                break
            if vm is not None and vm.get("last_error"):
                raise Failure(f"agent reports an error for {vm_id}: {vm['last_error']}")
            if time.perf_counter() > end:
                raise Failure(f"{vm_id} not running after {self.a.timeout}s; last report: {r}")
            time.sleep(self.poll)
        while True:
            status, body = request("GET", f"{self.agent}/agent/v1/vms/{vm_id}/console")
            if status == 200 and BOOTED.encode() in body:
                t_boot = time.perf_counter() - t0
                break
            if time.perf_counter() > end:
                raise Failure(f"{vm_id}: no {BOOTED} on the console after {self.a.timeout}s: {body[-500:]!r}")
            time.sleep(self.poll)
        after = self.metrics()
        delta = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
        return t_run, t_boot, {"put_s": t_put, "report_polls": polls, "converged": converged, "metrics": delta}

    def agent_remove(self):
        desired = self.desired(None)
        self.put(desired)
        end = self.deadline()
        while True:
            r = self.report()
            if (r.get("converged_generation") == desired["generation"] and not r["vms"]
                    and len(r["volumes"]) == self.a.extra_volumes):
                return
            if time.perf_counter() > end:
                raise Failure(f"removal not converged after {self.a.timeout}s: {r}")
            time.sleep(0.05)

    # raw libvirt ---------------------------------------------------------------------------------

    def take_template(self, vm_id):
        """The agent's persistent domain XML and its boot volume's backing file."""
        name = f"hci-{self.a.host_id}-{vm_id}"
        xml, _ = virsh(self.uri, f"dumpxml --inactive {name}")
        with open(os.path.join(self.a.work, "agent-domain.xml"), "w") as f:
            f.write(xml)
        root = ET.fromstring(xml)
        disk_source = root.find("./devices/disk/source").get("file")
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", disk_source],
                                         capture_output=True, text=True, check=True).stdout)
        backing = info.get("full-backing-filename") or info.get("backing-filename")
        if not backing or not os.path.isfile(backing):
            raise Failure(f"agent volume {disk_source} has no usable backing file ({backing!r})")
        self.backing = backing
        for tag in ("uuid", "metadata"):
            for el in root.findall(tag):
                root.remove(el)
        self.template = root
        log(f"template: the agent's XML of {name}; raw overlays are backed by {backing}")

    def setup_raw_pool(self):
        os.makedirs(self.raw_pool_dir, exist_ok=True)
        os.makedirs(self.raw_vm_dir, exist_ok=True)
        virsh(self.uri, f"pool-define-as {self.raw_pool} dir --target {self.raw_pool_dir}; "
                        f"pool-build {self.raw_pool}; pool-start {self.raw_pool}")

    def raw_xml(self, name, vol_path, console):
        root = ET.fromstring(ET.tostring(self.template))
        root.find("name").text = name
        disks = root.findall("./devices/disk")
        disks[0].find("source").set("file", vol_path)
        for serial in disks[0].findall("serial"):
            serial.text = name[-20:]
        logs = root.findall("./devices/serial/log")
        if len(logs) != 1:
            raise Failure(f"expected one serial log in the agent's XML, found {len(logs)}")
        # libvirt echoes serial port 0 as <console> (with the same log) in the XML it returns.
        for log_el in logs + root.findall("./devices/console/log"):
            log_el.set("file", console)
        return ET.tostring(root, encoding="unicode")

    def raw_create(self, idx):
        name = f"raw-{self.a.host_id}-{idx}"
        vol = f"{name}.qcow2"
        vol_path = os.path.join(self.raw_pool_dir, vol)
        vm_dir = os.path.join(self.raw_vm_dir, name)
        os.makedirs(vm_dir, exist_ok=True)
        console = os.path.join(vm_dir, "console.log")
        xml_path = os.path.join(vm_dir, "domain.xml")
        with open(xml_path, "w") as f:
            f.write(self.raw_xml(name, vol_path, console))
        # The volume XML the agent's dir-qcow2 backend writes (virsh vol-create-as --backing-vol
        # wants the backing file to be a volume of some pool; the image store is not a pool).
        vol_xml_path = os.path.join(vm_dir, "volume.xml")
        with open(vol_xml_path, "w") as f:
            f.write(VOLUME_XML.format(name=vol, capacity=1 << 30, backing=self.backing))
        batch = (f"vol-create {self.raw_pool} {vol_xml_path}; "
                 f"define {xml_path}; start {name}; domstate {name}")
        t0 = time.perf_counter()
        out, err = virsh(self.uri, batch, timing=True)
        state = [l.strip() for l in out.splitlines() if l.strip() and not l.startswith("(Time:")]
        end = self.deadline()
        while not state or state[-1] != "running":
            if time.perf_counter() > end:
                raise Failure(f"{name} not running after {self.a.timeout}s: {out}{err}")
            time.sleep(self.poll)
            o, _ = virsh(self.uri, f"domstate {name}")
            state = [o.strip()]
        t_run = time.perf_counter() - t0
        while True:
            try:
                with open(console, "rb") as f:
                    if BOOTED.encode() in f.read():
                        t_boot = time.perf_counter() - t0
                        break
            except FileNotFoundError:
                pass
            if time.perf_counter() > end:
                raise Failure(f"{name}: no {BOOTED} in {console} after {self.a.timeout}s")
            time.sleep(self.poll)
        steps = [float(m) / 1000.0 for m in re.findall(r"\(Time: ([0-9.]+) ms\)", out)]
        return t_run, t_boot, {"name": name, "vol": vol, "vm_dir": vm_dir, "virsh_steps_s": steps}

    def raw_remove(self, details):
        name, vol = details["name"], details["vol"]
        virsh(self.uri, f"destroy {name}; undefine {name}; vol-delete --pool {self.raw_pool} {vol}")
        shutil.rmtree(details["vm_dir"], ignore_errors=True)

    def cleanup_raw_pool(self):
        virsh(self.uri, f"pool-destroy {self.raw_pool}; pool-undefine {self.raw_pool}", check=False)

    # the run ---------------------------------------------------------------------------------------

    def one(self, method, idx, measured):
        if method == "agent":
            vm_id = f"a{idx}"
            t_run, t_boot, d = self.agent_create(vm_id)
            if self.template is None:
                self.take_template(vm_id)
            self.agent_remove()
        else:
            t_run, t_boot, d = self.raw_create(idx)
            if not measured:  # kept (BENCH_KEEP=1) to compare with agent-domain.xml
                xml, _ = virsh(self.uri, f"dumpxml --inactive {d['name']}")
                with open(os.path.join(self.a.work, "raw-domain.xml"), "w") as f:
                    f.write(xml)
            self.raw_remove(d)
        tag = "measured" if measured else "warm-up"
        log(f"{method:5} #{idx} ({tag}): running {t_run * 1000:7.1f} ms, booted {t_boot:6.2f} s")
        if measured:
            self.results[method].append({"run": t_run, "boot": t_boot, **d})
        time.sleep(self.a.pause)

    def run(self):
        self.setup_raw_pool()
        try:
            self.one("agent", 0, False)  # pays the image import; gives the domain XML template
            self.one("raw", 0, False)
            for i in range(1, self.a.iterations + 1):
                order = ("agent", "raw") if i % 2 else ("raw", "agent")
                for method in order:
                    self.one(method, i, True)
        finally:
            self.cleanup_raw_pool()


# --- report ------------------------------------------------------------------------------------


def ms(x):
    return f"{x * 1000:.0f}"


def report(b, a, header):
    ag, raw = b.results["agent"], b.results["raw"]
    lines = []
    p = lines.append
    p(f"## agent-create: {header['date']} on {header['cores']} cores, {header['kernel']}, {header['accel']}")
    p("")
    p(f"libvirt {header['libvirt']}, {header['qemu']}; hci {header['hci']}; guest: test guest "
      f"(x86_64, {a.firmware}), {a.vcpus} vCPU, {a.memory_mib} MiB, boot disk a qcow2 overlay of disk.qcow2; "
      f"{a.iterations} iterations per method after one warm-up each, alternating; polls every {a.poll_ms:g} ms; "
      f"load average before {header['load_before']}, after {header['load_after']}"
      + (f"; the agent's host holds {a.extra_volumes} more (empty) volumes" if a.extra_volumes else ""))
    p("")
    def med(vals):
        return statistics.median(vals) if vals else float("nan")

    def mget(r, key):
        return r["metrics"].get(key, 0.0)

    timed = [r for r in raw if len(r["virsh_steps_s"]) == 4]
    rows = [
        ("agent: PUT → report shows `running`", [r["run"] for r in ag], [r["boot"] for r in ag]),
        ("raw: one virsh process: vol-create + define + start", [r["run"] for r in raw], [r["boot"] for r in raw]),
        ("raw: the libvirt calls alone (sum of `virsh -t` times)", [sum(r["virsh_steps_s"]) for r in timed], None),
    ]
    p("| method | to running: median ms | p90 ms | to booted: median s | p90 s |")
    p("|---|---:|---:|---:|---:|")
    stats = []
    for label, run, boot in rows:
        st = (med(run), quantile(run, 0.9), med(boot) if boot else None, quantile(boot, 0.9) if boot else None)
        stats.append(st)
        booted = f"{st[2]:.2f} | {st[3]:.2f}" if boot else "– | –"
        p(f"| {label} | {ms(st[0])} | {ms(st[1])} | {booted} |")
    (a_run, a_run90, a_boot, a_boot90), (r_run, r_run90, r_boot, r_boot90), (c_run, c_run90, _, _) = stats
    p("")
    p("| figure | agent/raw, medians | agent/raw, p90 |")
    p("|---|---:|---:|")
    p(f"| to running (raw = virsh) | {a_run / r_run:.2f} | {a_run90 / r_run90:.2f} |")
    if timed:
        p(f"| to running (raw = libvirt calls alone) | {a_run / c_run:.2f} | {a_run90 / c_run90:.2f} |")
    p(f"| to booted (raw = virsh) | {a_boot / r_boot:.2f} | {a_boot90 / r_boot90:.2f} |")
    # Starting QEMU (libvirt's start) is most of "to running" and the noisiest part when the machine
    # is shared; without it the two methods' own work compares more steadily.
    a_rest = [r["run"] - mget(r, 'hci_agent_libvirt_call_duration_seconds_sum{call="start"}') for r in ag]
    r_rest = [r["run"] - r["virsh_steps_s"][2] for r in timed]
    p("")
    ok = a_run <= 1.15 * r_run
    p(f"Target (agent to running ≤ 1.15× raw virsh, medians): {'MET' if ok else 'NOT MET'} "
      f"({(a_run / r_run - 1) * 100:+.0f} %, {ms(a_run - r_run)} ms)")
    if timed:
        p("")
        p(f"To running without the start call (QEMU launch), medians: agent {ms(med(a_rest))} ms, raw virsh "
          f"{ms(med(r_rest))} ms, raw libvirt calls alone {ms(med([sum(r['virsh_steps_s']) - r['virsh_steps_s'][2] for r in timed]))} ms.")

    # Where the agent's time goes, per measured create (medians).
    calls = sorted({re.search(r'call="([^"]+)"', k).group(1) for r in ag for k in r["metrics"]
                    if k.startswith("hci_agent_libvirt_call_duration_seconds_count")})
    pass_s = [mget(r, "hci_agent_reconcile_duration_seconds_sum") for r in ag]
    passes = [mget(r, "hci_agent_reconcile_duration_seconds_count") for r in ag]
    dom_s = [sum(mget(r, f'hci_agent_libvirt_call_duration_seconds_sum{{call="{c}"}}') for c in calls) for r in ag]
    p("")
    p("Agent, per measured create (medians):")
    p("")
    p("| PUT answered | reconcile passes | pass duration | libvirt domain calls in the pass | rest of the pass "
      "(volumes, image check, files, report) | after the pass (queueing, poll, HTTP) |")
    p("|---:|---:|---:|---:|---:|---:|")
    after = [r["run"] - r["put_s"] - s for r, s in zip(ag, pass_s)]
    p(f"| {ms(med([r['put_s'] for r in ag]))} ms | {med(passes):.0f} | {ms(med(pass_s))} ms | {ms(med(dom_s))} ms "
      f"| {ms(med([s - d for s, d in zip(pass_s, dom_s)]))} ms | {ms(med(after))} ms |")
    p("")
    p("| libvirt domain call | calls per create | median total ms |")
    p("|---|---:|---:|")
    for c in calls:
        n = med([mget(r, f'hci_agent_libvirt_call_duration_seconds_count{{call="{c}"}}') for r in ag])
        s = med([mget(r, f'hci_agent_libvirt_call_duration_seconds_sum{{call="{c}"}}') for r in ag])
        p(f"| {c} | {n:.0f} | {s * 1000:.1f} |")
    if timed:
        p("")
        p("Raw, per measured create (medians, `virsh -t`): "
          + ", ".join(f"{n} {ms(med([r['virsh_steps_s'][i] for r in timed]))} ms"
                      for i, n in enumerate(("vol-create", "define", "start", "domstate")))
          + f"; virsh process start and connection {ms(med([r['run'] - sum(r['virsh_steps_s']) for r in timed]))} ms")
    p("")
    p("Per iteration (ms to running / s to booted): agent "
      + ", ".join(f"{ms(r['run'])}/{r['boot']:.1f}" for r in ag) + "; raw "
      + ", ".join(f"{ms(r['run'])}/{r['boot']:.1f}" for r in raw))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent-url", required=True)
    ap.add_argument("--uri", required=True, help="libvirt URI of the agent's private instance")
    ap.add_argument("--host-id", required=True)
    ap.add_argument("--image", required=True, help="the test guest's disk.qcow2")
    ap.add_argument("--work", required=True, help="scratch directory (traversable by libvirt-qemu)")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--memory-mib", type=int, default=256)
    ap.add_argument("--firmware", default="x86_64-bios")
    ap.add_argument("--poll-ms", type=float, default=10)
    ap.add_argument("--pause", type=float, default=2, help="seconds between creates")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per wait")
    ap.add_argument("--extra-volumes", type=int, default=0,
                    help="empty volumes the agent's desired state holds throughout (created by the warm-up)")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()

    def load():
        return " ".join(open("/proc/loadavg").read().split()[:3])

    b = Bench(a)
    load_before = load()
    b.run()
    status, body = request("GET", f"{b.agent}/agent/v1/host-info")
    info = json.loads(body) if status == 200 else {}
    ver, _ = virsh(a.uri, "version", check=False)
    qemu = re.search(r"Running hypervisor: (.*)", ver)
    header = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "cores": os.cpu_count(),
        "kernel": "Linux " + os.uname().release,
        "accel": info.get("accelerator", "?"),
        "libvirt": info.get("libvirt_version", "?"),
        "qemu": qemu.group(1).strip() if qemu else "QEMU ?",
        "hci": os.environ.get("BENCH_HCI_VERSION", "?"),
        "load_before": load_before,
        "load_after": load(),
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"header": header, "results": b.results}, f, indent=1)
    sys.stdout.write(report(b, a, header))


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        log(f"error: {e}")
        sys.exit(1)
