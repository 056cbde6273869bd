#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""closetrace test suite: unit tests, then integration tests.

Integration tests run the built `closetrace --json` as root against real
sockets, each in a network namespace of its own (so its sysctls and
TIME_WAIT table are its own), and assert on the records.  Under CI=true a
test that cannot run (not root, cannot attach) fails instead of skipping.

A test whose feature does not exist in the running kernel declares it with
@requires(...) and is reported as "SKIP name: not supported on this kernel
(why)", counted apart from other skips.  VMTEST=1 (set by scripts/vmtest in
its qemu guests) trims the iterations of a few user-space-only tests.

Ends with a line "N passed, N failed[, N skipped][, N unsupported]".
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CI = os.environ.get("CI") == "true"
VMTEST = os.environ.get("VMTEST") == "1"  # in scripts/vmtest's guest (TCG: slow)
# closetrace's start (BPF loading and verification) may take this long: under
# TCG a --summary tracer needs ~25 s alone, and guests run side by side
ATTACH_TIMEOUT = 120 if VMTEST else 30


class Skip(Exception):
    pass


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def kernel_version():
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def requires(why, kernel=None, probe=None):
    """A test's kernel requirement: Linux `kernel` (major, minor) or newer,
    and/or probe() true.  Only for what the kernel really cannot do (the
    feature is not in it), never for a harness or environment problem.  On
    a kernel without it the test does not run and is reported as not
    supported, with `why`."""
    def mark(fn):
        fn.requires = (why, kernel, probe)
        return fn
    return mark


def unsupported(fn):
    """Why fn cannot run on this kernel, or None."""
    why, kernel, probe = getattr(fn, "requires", (None, None, None))
    if why is None:
        return None
    if kernel and kernel_version() < tuple(kernel):
        return "%s; this is %s" % (why, os.uname().release)
    if probe and not probe():
        return why
    return None


_FEATURES = None


def kernel_feature(name):
    """What `closetrace features` probed on this kernel (checked against the
    kernel's version by t_kernel_features)."""
    global _FEATURES
    if _FEATURES is None:
        p = run([Ctx.bin("closetrace"), "features"], check_rc=False)
        _FEATURES = dict(l.split(None, 1) for l in p.stdout.splitlines() if l.strip())
    return _FEATURES.get(name) == "yes"


# the upstream release that brought each probed feature
FEATURE_SINCE = {
    "btf_tracepoints": (5, 5), "task_btf": (5, 11), "task_storage": (5, 11),
    "socket_cookie": (5, 12), "cmpxchg": (5, 12), "error_report_tracepoint": (5, 14),
    "task_pt_regs": (5, 15), "runtime_alloc": (6, 1),
}


class Ctx:
    build = "build"

    @classmethod
    def bin(cls, name):
        return os.path.join(ROOT, cls.build, name)


def run(cmd, timeout=30, check_rc=True, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, **kw)
    if check_rc and p.returncode != 0:
        raise Fail("%s exited %d: %s" % (" ".join(cmd), p.returncode,
                                          p.stderr.strip()[-500:]))
    return p


class Netns:
    """A network namespace of the test's own, with loopback up."""

    def __init__(self, name, sysctls=None):
        self.name = "ct-%s-%d" % (name, os.getpid())
        self.sysctls = sysctls or {}

    def __enter__(self):
        run(["ip", "netns", "del", self.name], check_rc=False)
        run(["ip", "netns", "add", self.name])
        self.exec_(["ip", "link", "set", "lo", "up"])
        for k, v in self.sysctls.items():
            self.exec_(["sysctl", "-q", "-w", "%s=%s" % (k, v)])
        self.inode = os.stat("/var/run/netns/" + self.name).st_ino
        return self

    def cmd(self, argv):
        return ["ip", "netns", "exec", self.name] + argv

    def exec_(self, argv, timeout=30):
        return run(self.cmd(argv), timeout=timeout)

    def sysctl(self, key):
        return self.exec_(["sysctl", "-n", key]).stdout.strip()

    def __exit__(self, *a):
        run(["ip", "netns", "del", self.name], check_rc=False)


class Tracer:
    """closetrace --json running in the background, filtered to one netns."""

    def __init__(self, args):
        self.args = args
        self.proc = None
        self.records = []
        self.stderr = ""

    def __enter__(self):
        argv = [Ctx.bin("closetrace"), "--json"] + self.args
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        # wait for "Tracing ..." on stderr: attached
        deadline = time.time() + ATTACH_TIMEOUT
        line = ""
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line or line.startswith("Tracing"):
                break
            self.stderr += line
        if not line.startswith("Tracing"):
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
            msg = (self.stderr + err).strip().splitlines()
            raise Fail("closetrace did not attach: %s" % (msg[-1] if msg else "no output"))
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def parsed(self):
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                raise Fail("closetrace printed invalid JSON: %r" % line)
        return out

    def wait_for(self, pred, timeout, what):
        """Wait until pred(records) is true; return the records."""
        deadline = time.time() + timeout
        while True:
            recs = self.parsed()
            if pred(recs):
                return recs
            if time.time() > deadline:
                raise Fail("timed out after %ss waiting for %s; got %s" %
                           (timeout, what, summarize(recs)))
            if self.proc.poll() is not None:
                raise Fail("closetrace exited early (%s) waiting for %s" %
                           (self.proc.returncode, what))
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Fail("closetrace did not exit on SIGINT")
        self.reader.join(timeout=5)
        self.stderr += self.proc.stderr.read()
        return self.proc.returncode

    def __exit__(self, *a):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def summarize(recs):
    return [{k: r.get(k) for k in ("event", "pid", "lport", "rport",
                                    "initiator", "end", "timewait")}
            for r in recs][-12:]


def scenario(ns, name, *args, timeout=60, wait_file=None):
    argv = [Ctx.bin("ctscen"), name] + list(args)
    if wait_file:
        argv += ["--wait-file", wait_file]
    p = run(ns.cmd(argv), timeout=timeout)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    check(lines, "ctscen %s printed nothing" % name)
    return json.loads(lines[-1])


def closes(recs, **kw):
    return [r for r in recs if r["event"] == "close" and
            all(r.get(k) == v for k, v in kw.items())]


def tws(recs, **kw):
    return [r for r in recs if r["event"] == "timewait" and
            all(r.get(k) == v for k, v in kw.items())]


def traced(ns, *extra):
    return Tracer(["--netns", str(ns.inode)] + list(extra))


def one(lst, what):
    check(len(lst) == 1, "expected exactly one %s, got %d" % (what, len(lst)))
    return lst[0]


# ---------------------------------------------------------------- tests


def t_client_closes_first():
    with Netns("cfirst") as ns, traced(ns) as tr:
        s = scenario(ns, "client-first")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two close records")
        c = one(closes(recs, lport=s["client_port"]), "client close")
        srv = one(closes(recs, rport=s["client_port"]), "server close")
        check(c["initiator"] == "local", "client initiator %s" % c["initiator"])
        check(c["timewait"] is True, "client should enter TIME_WAIT")
        check(c["pid"] == s["client_pid"], "client pid %s != %s" % (c["pid"], s["client_pid"]))
        check(srv["initiator"] == "remote", "server initiator %s" % srv["initiator"])
        check(srv["timewait"] is False, "server must not enter TIME_WAIT")
        check(srv["pid"] == s["server_pid"], "server pid %s != %s" % (srv["pid"], s["server_pid"]))
        for st in ("ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2"):
            check(st in c["states"], "client states lack %s: %s" % (st, c["states"]))
        for st in ("ESTABLISHED", "CLOSE_WAIT", "LAST_ACK"):
            check(st in srv["states"], "server states lack %s: %s" % (st, srv["states"]))
        check(c["conn_id"] != srv["conn_id"], "two connections share a conn_id")
        check(srv["accepted"] is True and c["accepted"] is False,
              "accepted: server %s, client %s" % (srv["accepted"], c["accepted"]))
        check(c["netns"] == ns.inode, "netns %s != %s" % (c["netns"], ns.inode))
        check(c["family"] == "ipv4" and c["laddr"] == "127.0.0.1", "bad address %s" % c)
        tr.stop()


def t_server_closes_first():
    with Netns("sfirst") as ns, traced(ns) as tr:
        s = scenario(ns, "server-first")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two close records")
        c = one(closes(recs, lport=s["client_port"]), "client close")
        srv = one(closes(recs, rport=s["client_port"]), "server close")
        check(srv["initiator"] == "local" and srv["timewait"], "server: %s" % srv)
        check(c["initiator"] == "remote" and not c["timewait"], "client: %s" % c)
        check(srv["pid"] == s["server_pid"], "server pid %s" % srv["pid"])
        check("CLOSE_WAIT" in c["states"], "client states %s" % c["states"])
        tr.stop()


def t_simultaneous_close():
    # Both FINs cross only if both sides retransmit them in the same jiffy
    # (ctscen aligns the two shutdowns to a tick); under emulation the two
    # can land a tick apart, and then only one side passes CLOSING.  The
    # scenario says which side did (ground truth): a few tries, bounded,
    # for a run where both did.
    for attempt in range(4):
        with Netns("simul") as ns, traced(ns) as tr:
            s = scenario(ns, "simultaneous")
            if not s.get("ok_closing"):
                tr.stop()
                continue
            recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 15, "two close records")
            for r in closes(recs):
                check(r["initiator"] == "simultaneous", "initiator %s" % r["initiator"])
                check("CLOSING" in r["states"], "states %s" % r["states"])
                check(r["timewait"], "both sides enter TIME_WAIT after CLOSING")
            tr.stop()
            return
    raise Fail("scenario did not reach CLOSING on both sides in %d tries: %s" % (attempt + 1, s))


def t_linger0_reset():
    with Netns("linger0") as ns, traced(ns) as tr:
        s = scenario(ns, "linger0")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two close records")
        c = one(closes(recs, lport=s["client_port"]), "client close")
        srv = one(closes(recs, rport=s["client_port"]), "server close")
        check(c["initiator"] == "local-reset", "client initiator %s" % c["initiator"])
        check(c["rst_sent"] and not c["timewait"], "client: %s" % c)
        check(c["pid"] == s["client_pid"], "client pid %s" % c["pid"])
        check(srv["initiator"] == "remote-reset", "server initiator %s" % srv["initiator"])
        check(not tws(recs), "no TIME_WAIT after an abort")
        tr.stop()


def t_unread_data_reset():
    with Netns("unread") as ns, traced(ns) as tr:
        s = scenario(ns, "unread")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two close records")
        c = one(closes(recs, lport=s["client_port"]), "client close")
        srv = one(closes(recs, rport=s["client_port"]), "server close")
        check(c["initiator"] == "local-reset" and c["rst_sent"], "client: %s" % c)
        check(not c["timewait"], "no TIME_WAIT after an abort")
        check(srv["initiator"] == "remote-reset" and srv["rst_received"], "server: %s" % srv)
        tr.stop()


def t_close_wait_duration():
    delay_ms = 2000
    with Netns("closewait") as ns, traced(ns) as tr:
        # the scenario runs in the background so the test can look at the
        # trace while the server sits in CLOSE_WAIT
        p = subprocess.Popen(ns.cmd([Ctx.bin("ctscen"), "close-wait", "--delay", str(delay_ms)]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            recs = tr.wait_for(lambda r: len(closes(r)) >= 1, 10, "the client's close")
            time.sleep(delay_ms / 2000.0)
            early = tr.parsed()
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
        check(p.returncode == 0, "ctscen failed: %s" % err)
        s = json.loads(out.strip().splitlines()[-1])
        check(not closes(early, rport=s["client_port"]),
              "the CLOSE_WAIT side's record appeared before the app closed")
        recs = tr.wait_for(lambda r: len(closes(r, rport=s["client_port"])) == 1, 10,
                           "the server's close")
        srv = one(closes(recs, rport=s["client_port"]), "server close")
        check(srv["ts_ns"] >= s["server_close_ns"], "record before the app's close()")
        cw = srv["states"].get("CLOSE_WAIT", 0) / 1e6
        check(abs(cw - delay_ms) <= 0.2 * delay_ms,
              "CLOSE_WAIT %.1f ms, app delay %d ms" % (cw, delay_ms))
        check(srv["pid"] == s["server_pid"], "server pid %s" % srv["pid"])
        tr.stop()


def t_ipv6():
    with Netns("ipv6") as ns, traced(ns) as tr:
        s = scenario(ns, "client-first", "-6")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two close records")
        c = one(closes(recs, lport=s["client_port"]), "client close")
        check(c["family"] == "ipv6" and c["laddr"] == "::1" and c["raddr"] == "::1",
              "address %s" % c)
        check(c["initiator"] == "local" and c["timewait"], "client %s" % c)
        tr.stop()


def t_family_filter():
    with Netns("family") as ns, traced(ns, "-6") as tr:
        scenario(ns, "client-first")
        s6 = scenario(ns, "client-first", "-6", "--port", "7002")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two IPv6 close records")
        time.sleep(0.3)
        recs = tr.parsed()
        check(all(r["family"] == "ipv6" for r in recs if r["event"] != "stats"),
              "-6 let IPv4 through: %s" % summarize(recs))
        check(closes(recs, lport=s6["client_port"]), "IPv6 close missing")
        tr.stop()


def t_port_filter():
    with Netns("ports") as ns, traced(ns, "--lport", "7003") as tr:
        scenario(ns, "client-first", "--port", "7004")
        scenario(ns, "client-first", "--port", "7003")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 1, 10, "the server close on 7003")
        time.sleep(0.3)
        recs = tr.parsed()
        check(all(r["lport"] == 7003 for r in recs if r["event"] != "stats"),
              "--lport 7003 let others through: %s" % summarize(recs))
        tr.stop()


def t_timewait_expiry():
    # one scenario's TIME_WAIT, and a burst of 2000 (churn) expiring together:
    # every one "expired", none taken for a kill (expire_timers() lets other
    # timer events in between detaching a timer and running it)
    n = 500 if VMTEST else 2000
    tmp = tmpdir("twexpire")
    log = os.path.join(tmp, "churn.log")
    # tcp_rfc1337: an RST does not kill a TIME_WAIT (under emulation a FIN
    # retransmitted to a peer already gone draws one: a real kill)
    with Netns("twexpire", {"net.ipv4.ip_local_port_range": "10000 60000",
                            "net.ipv4.tcp_tw_reuse": "0", "net.ipv4.tcp_rfc1337": "1"}) as ns, \
            traced(ns) as tr:
        s = scenario(ns, "tw-expire")
        run(ns.cmd([Ctx.bin("churn"), "-m", "client-first", "-p", "901", "-n", str(n),
                    "-c", "2", "-s", "1", "-l", log, "-t", "60"]), timeout=120)
        burst = set()
        for line in open(log):
            ca, cp, sa, sp, _ = line.split()
            burst.add((ca, int(cp), sa, int(sp)))
        check(len(burst) >= n, "churn logged %d connections, want %d" % (len(burst), n))
        recs = tr.wait_for(lambda r: len(tws(r)) >= 1 + len(burst), 80, "the TIME_WAITs to expire")
        ends = {}
        for t in tws(recs):
            if (t["laddr"], t["lport"], t["raddr"], t["rport"]) in burst:
                ends[t["end"]] = ends.get(t["end"], 0) + 1
        check(ends == {"expired": len(burst)}, "burst of %d TIME_WAITs ended %s" % (len(burst), ends))
        t = one([t for t in tws(recs, lport=s["client_port"])
                 if (t["laddr"], t["lport"], t["raddr"], t["rport"]) not in burst], "client timewait")
        check(t["end"] == "expired", "end %s" % t["end"])
        d = t["duration_ns"] / 1e9
        check(60.0 <= d <= 63.0, "TIME_WAIT lasted %.2f s" % d)
        c = one([c for c in closes(recs, lport=s["client_port"])
                 if (c["laddr"], c["lport"], c["raddr"], c["rport"]) not in burst], "client close")
        check(c["conn_id"] == t["conn_id"], "conn_id does not join close and timewait")
        check(t["pid"] == s["client_pid"], "timewait pid %s" % t["pid"])
        tr.stop()
    run(["rm", "-rf", tmp])


def t_timewait_reused():
    with Netns("twreuse", {"net.ipv4.tcp_tw_reuse": "1"}) as ns, traced(ns) as tr:
        s = scenario(ns, "tw-reuse")
        recs = tr.wait_for(lambda r: len(tws(r, lport=s["client_port"])) >= 1, 15,
                           "the reused TIME_WAIT")
        t = tws(recs, lport=s["client_port"])[0]
        check(t["end"] == "reused", "end %s" % t["end"])
        check(t["pid"] == s["first_pid"], "TIME_WAIT owner %s != %s" % (t["pid"], s["first_pid"]))
        check(t["reuse_pid"] == s["reuse_pid"], "reuse_pid %s != %s" % (t["reuse_pid"], s["reuse_pid"]))
        check(t.get("reuse_comm"), "reuse_comm missing")
        check(0.5 <= t["duration_ns"] / 1e9 <= 30, "reuse age %.2f s" % (t["duration_ns"] / 1e9))
        tr.stop()


def t_timewait_reset():
    with Netns("twrst") as ns, traced(ns) as tr:
        s = scenario(ns, "tw-rst")
        check(s.get("tw_gone"), "scenario did not kill the TIME_WAIT: %s" % s)
        recs = tr.wait_for(lambda r: len(tws(r, lport=s["client_port"])) >= 1, 15,
                           "the killed TIME_WAIT")
        t = one(tws(recs, lport=s["client_port"]), "client timewait")
        check(t["end"] == "reset", "end %s" % t["end"])
        # Dated to the kill, between the injection and the scenario's
        # seeing the socket gone (CLOCK_MONOTONIC both).  The timewait
        # socket began after the client's close; its TIME_WAIT proper after
        # the server's FIN, a split estimated within a jiffy (4 ms at HZ=250).
        slack = 30e6 if VMTEST else 2e6
        cc, sc = s["client_close_ns"], s["server_close_ns"]
        lo, hi = s["rst_sent_ns"], s["tw_gone_ns"]
        check(lo - cc - slack <= t["tw_sock_ns"] <= hi - cc + slack,
              "timewait socket lived %d ns; killed %d..%d ns after the client's close" %
              (t["tw_sock_ns"], lo - cc, hi - cc))
        check(lo - sc - slack - 4e6 <= t["duration_ns"] <= hi - sc + slack + 4e6,
              "TIME_WAIT %d ns; killed %d..%d ns after the server's FIN" %
              (t["duration_ns"], lo - sc, hi - sc))
        tr.stop()


SYN_KILL = r"""
import json, socket, time
R = socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
srv = socket.socket(); srv.setsockopt(*R); srv.bind(("127.0.0.1", 7009)); srv.listen()
c = socket.socket(); c.setsockopt(*R); c.bind(("127.0.0.1", 7100)); c.connect(("127.0.0.1", 7009))
a, _ = srv.accept()
a.close()                      # the server closes first...
c.recv(1); c.close()           # ...so its side keeps the TIME_WAIT (7009 <-> 7100)
time.sleep(0.3)
c2 = socket.socket(); c2.setsockopt(*R); c2.bind(("127.0.0.1", 7100))
c2.connect(("127.0.0.1", 7009))  # a new SYN on that 4-tuple: TCP_TW_SYN
a2, _ = srv.accept()
print(json.dumps({"ok": True}))
"""


def t_timewait_syn_kill():
    with Netns("twsyn") as ns, traced(ns) as tr:
        p = run(ns.cmd(["python3", "-c", SYN_KILL]), timeout=30)
        check(json.loads(p.stdout)["ok"], "scenario")
        recs = tr.wait_for(lambda r: len(tws(r, lport=7009)) >= 1, 10, "the server's TIME_WAIT end")
        t = one(tws(recs, lport=7009, rport=7100), "server timewait")
        check(t["end"] == "syn", "end %s" % t["end"])
        tr.stop()


def t_timewait_fin_wait2_timeout():
    # an orphaned FIN_WAIT2 whose peer never sends its FIN (tcp_fin_timeout=2)
    with Netns("fw2", {"net.ipv4.tcp_fin_timeout": "2"}) as ns, traced(ns) as tr:
        s = scenario(ns, "close-wait-leak", "--leak-ms", "4000")
        recs = tr.wait_for(lambda r: len(tws(r, lport=s["client_port"])) >= 1, 10,
                           "the client's FIN_WAIT2 timeout")
        t = one(tws(recs, lport=s["client_port"]), "client timewait")
        check(t["end"] == "fin-wait2-timeout", "end %s" % t["end"])
        check(1.5e9 <= t["states"].get("FIN_WAIT2", 0) <= 4e9, "FIN_WAIT2 %s" % t["states"])
        check(t["duration_ns"] == 0, "no TIME_WAIT proper: %s" % t["duration_ns"])
        c = one(closes(recs, lport=s["client_port"]), "client close")
        check(c["timewait_substate"] == "FIN_WAIT2", "substate %s" % c)
        tr.stop()


RETRANS_TIMEOUT = r"""
import errno, json, socket, subprocess, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 7010)); srv.listen()
c = socket.create_connection(("127.0.0.1", 7010)); a, _ = srv.accept()
port = c.getsockname()[1]
# every segment from the client is lost from now on
subprocess.run(["nft", "-f", "-"], check=True, input=b"table inet ct_rto {\n chain o {\n  type filter "
               b"hook output priority 0; policy accept;\n  tcp sport %d drop\n }\n}\n" % port)
try:
    c.send(b"x" * 10)
    c.settimeout(20)
    try:
        c.recv(1)
        err = 0
    except OSError as e:
        err = e.errno
finally:
    subprocess.run(["nft", "delete", "table", "inet", "ct_rto"])
print(json.dumps({"client_port": port, "errno": err}))
"""


# TCP Fast Open children that die in SYN_RECV after carrying data: the
# client's data rides in its SYN, the server's child is queued for accept()
# at once, and nftables drops the client's pure ACKs so the child never
# leaves SYN_RECV; each one then dies a different way
TFO_SYN_RECV = r"""
import ctypes, json, os, select, socket, struct, subprocess, sys, time
PORT, PORT2 = 7020, 7021
TCP_FASTOPEN, MSG_FASTOPEN, TCP_INFO = 23, 0x20000000, 11
NFT = (b"table inet ct_tfo {\n chain o {\n  type filter hook output priority 0; policy accept;\n"
       b"  tcp dport { %d, %d } tcp flags & (fin|syn|rst|psh|ack) == ack drop\n }\n}\n" % (PORT, PORT2))
libc = ctypes.CDLL(None, use_errno=True)
LISTENERS = []


def listener(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    LISTENERS.append(s)
    return s


def client(port):
    # a forked client: data in the SYN; then 'rst' (SO_LINGER {1,0}) or 'exit'
    cr, cw = os.pipe()
    rr, rw = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(cw); os.close(rr)
        for l in LISTENERS:  # the server's alone: its close() stops them
            l.close()
        c = socket.socket()
        c.sendto(b"hello", MSG_FASTOPEN, ("127.0.0.1", port))
        os.write(rw, b"%d\n" % c.getsockname()[1])
        cmd = os.read(cr, 16)
        if cmd.startswith(b"rst"):
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            os.write(rw, b"done\n")
            os.read(cr, 16)
        os._exit(0)
    os.close(cr); os.close(rw)
    port_ = int(os.read(rr, 64).split()[0])
    return {"pid": pid, "cmd": cw, "rep": rr, "port": port_}


def tell(c, what):
    os.write(c["cmd"], what)


def state(s):
    return s.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 8)[0]


def reap(c):
    tell(c, b"exit")
    os.waitpid(c["pid"], 0)


out = {"server_pid": os.getpid(), "server_port": PORT}
srv = listener(PORT)
# warm-up: the client fetches a Fast Open cookie (no data in this SYN)
w = socket.socket()
w.sendto(b"hi", MSG_FASTOPEN, ("127.0.0.1", PORT))
a, _ = srv.accept(); a.recv(2); w.close(); a.close()
subprocess.run(["nft", "-f", "-"], check=True, input=NFT)
try:
    # 1: accepted and read in SYN_RECV, then reset by the peer
    c = client(PORT)
    a, _ = srv.accept()
    st = state(a)
    data = a.recv(5)
    tell(c, b"rst\n"); os.read(c["rep"], 16)
    try:
        select.select([a], [], [], 5)
        a.recv(1); seen = "eof"
    except ConnectionResetError:
        seen = "reset"
    out["peer_reset"] = {"client_port": c["port"], "client_pid": c["pid"], "state_at_accept": st,
                         "read": data.decode(), "server_saw": seen}
    a.close(); reap(c)
    # 2: accepted, not read, close(): unread data, RST
    c = client(PORT)
    a, _ = srv.accept()
    st = state(a)
    time.sleep(0.05)
    out["unread_close"] = {"client_port": c["port"], "client_pid": c["pid"], "state_at_close": state(a),
                           "state_at_accept": st}
    a.close(); reap(c)
    # 3: never accepted, its listener closed (inet_csk_listen_stop() -> tcp_disconnect())
    l2 = listener(PORT2)
    c = client(PORT2)
    select.select([l2], [], [], 5)
    ss = subprocess.run(["ss", "-Htn", "state", "syn-recv", "sport", "= :%d" % PORT2],
                        stdout=subprocess.PIPE, text=True).stdout
    out["listener_closed"] = {"client_port": c["port"], "client_pid": c["pid"], "server_port": PORT2,
                              "syn_recv_children": len(ss.splitlines())}
    l2.close(); reap(c)
    # 4: accepted and read, then connect(AF_UNSPEC) (tcp_disconnect())
    c = client(PORT)
    a, _ = srv.accept()
    st = state(a)
    data = a.recv(5)
    unspec = ctypes.create_string_buffer(16)
    rc = libc.connect(a.fileno(), unspec, 16)
    out["af_unspec"] = {"client_port": c["port"], "client_pid": c["pid"], "state_at_accept": st,
                        "read": data.decode(), "connect_rc": rc, "state_after": state(a)}
    a.close(); reap(c)
finally:
    subprocess.run(["nft", "delete", "table", "inet", "ct_tfo"])
print(json.dumps(out))
"""


def t_tfo_syn_recv_deaths():
    with Netns("tfo", {"net.ipv4.tcp_fastopen": "3"}) as ns, traced(ns) as tr:
        p = run(ns.cmd(["python3", "-c", TFO_SYN_RECV]), timeout=60)
        s = json.loads(p.stdout)
        cases = ("peer_reset", "unread_close", "listener_closed", "af_unspec")
        for k in ("peer_reset", "unread_close", "af_unspec"):
            check(s[k]["state_at_accept"] == 3, "%s: accepted in state %s, not SYN_RECV: %s" %
                  (k, s[k]["state_at_accept"], s))
        check(s["peer_reset"]["server_saw"] == "reset" and s["unread_close"]["state_at_close"] == 3
              and s["listener_closed"]["syn_recv_children"] == 1 and
              s["af_unspec"]["connect_rc"] == 0, "scenario %s" % s)
        recs = tr.wait_for(lambda r: all(closes(r, rport=s[k]["client_port"]) for k in cases), 10,
                           "a close record for each Fast Open child")
        want = {"peer_reset": ("remote-reset", "rst"), "unread_close": ("local-reset", "unread-data-reset"),
                "listener_closed": ("local-reset", None), "af_unspec": ("local-reset", None)}
        for k in cases:
            c = one(closes(recs, rport=s[k]["client_port"]), "close of the %s child" % k)
            check(c["lport"] == s[k].get("server_port", s["server_port"]), "%s: %s" % (k, c))
            check(c["pid"] == s["server_pid"], "%s: pid %s, server %s (client %s)" %
                  (k, c["pid"], s["server_pid"], s[k]["client_pid"]))
            check(c["accepted"] and "SYN_RECV" in c["states"] and "ESTABLISHED" not in c["states"],
                  "%s: %s" % (k, c))
            init, method = want[k]
            check(c["initiator"] == init, "%s: initiator %s, want %s" % (k, c["initiator"], init))
            check(method is None or c["method"] == method, "%s: method %s, want %s" %
                  (k, c["method"], method))
            check(c["rst_sent"] if init == "local-reset" else c["rst_received"], "%s: %s" % (k, c))
        tr.stop()


def t_retransmission_timeout():
    with Netns("rto", {"net.ipv4.tcp_retries2": "2"}) as ns, traced(ns) as tr:
        p = run(ns.cmd(["python3", "-c", RETRANS_TIMEOUT]), timeout=60)
        s = json.loads(p.stdout)
        check(s["errno"] == 110, "the client did not time out: %s" % s)  # ETIMEDOUT
        recs = tr.wait_for(lambda r: len(closes(r, lport=s["client_port"])) == 1, 10,
                           "the timed-out close")
        c = one(closes(recs, lport=s["client_port"]), "client close")
        check(c["initiator"] == "timeout", "initiator %s" % c["initiator"])
        tr.stop()



def t_keepalive_timeout():
    # keepalive probes unanswered (nft drops server -> client): the kernel
    # resets the connection and the application gets ETIMEDOUT
    with Netns("keepalive") as ns, traced(ns) as tr:
        s = scenario(ns, "keepalive")
        check(s["client_errno"] == 110, "the client did not time out: %s" % s)  # ETIMEDOUT
        recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two close records")
        c = one(closes(recs, lport=s["client_port"]), "client close")
        srv = one(closes(recs, rport=s["client_port"]), "server close")
        check(c["initiator"] == "timeout", "client initiator %s" % c["initiator"])
        check(c["method"] == "none" and c["rst_sent"] and not c["timewait"], "client: %s" % c)
        check(c["pid"] == s["client_pid"], "client pid %s" % c["pid"])
        if s["server_read"] == "reset":
            check(srv["initiator"] == "remote-reset" and srv["rst_received"], "server: %s" % srv)
        tr.stop()


def t_listener_closed_child_reset():
    # an established child never accepted: closing its listener (close() or
    # process exit) resets it through tcp_disconnect(); nobody set SO_LINGER
    for how in ("listener-closed", "listener-exit"):
        with Netns(how) as ns, traced(ns) as tr:
            s = scenario(ns, how)
            check(s["child_established"] and s["child_gone"] and s["client_read"] == "reset",
                  "scenario: %s" % s)
            recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two close records")
            srv = one(closes(recs, lport=s["server_port"], rport=s["client_port"]), "child close")
            c = one(closes(recs, lport=s["client_port"]), "client close")
            check(srv["initiator"] == "local-reset", "%s: child initiator %s" % (how, srv["initiator"]))
            check(srv["method"] == "listener-closed", "%s: child method %s" % (how, srv["method"]))
            check(srv["rst_sent"] and not srv["timewait"], "%s: child %s" % (how, srv))
            check(srv["pid"] == s["server_pid"], "%s: child pid %s != %s" %
                  (how, srv["pid"], s["server_pid"]))
            check(bool(srv.get("exiting")) == (how == "listener-exit"),
                  "%s: exiting %s" % (how, srv.get("exiting")))
            check(c["initiator"] == "remote-reset" and c["rst_received"], "%s: client %s" % (how, c))
            check(not tws(recs), "%s: no TIME_WAIT after a reset: %s" % (how, tws(recs)))
            tr.stop()


def t_abort_on_data():
    # data reaches the orphaned client after its close(): FIN_WAIT1 ->
    # FIN_WAIT2 -> CLOSE and an RST (TCPAbortOnData).  That needs the
    # server's answer to carry the ACK of the client's FIN (delayed ACK);
    # the scenario says from the namespace's counter whether it did: a few
    # tries, bounded, for a run where it did.
    for attempt in range(4):
        with Netns("abortdata") as ns, traced(ns) as tr:
            s = scenario(ns, "abort-on-data")
            if s["abort_on_data"] != 1:
                tr.stop()
                continue
            check(s["tw_overflow"] == 0 and not s["client_tw"], "scenario: %s" % s)
            recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two close records")
            c = one(closes(recs, lport=s["client_port"]), "client close")
            srv = one(closes(recs, rport=s["client_port"]), "server close")
            check(c["initiator"] == "local", "client initiator %s" % c["initiator"])
            check(c["method"] == "abort-on-data", "client method %s" % c["method"])
            check(c["rst_sent"] and not c["timewait"], "client: %s" % c)
            check(c["pid"] == s["client_pid"], "client pid %s" % c["pid"])
            check(not tws(recs, lport=s["client_port"]),
                  "a timewait record for a connection that never needed one: %s" %
                  tws(recs, lport=s["client_port"]))
            if s["server_state"] == "CLOSE":
                check(srv["rst_received"], "server: %s" % srv)
            tr.stop()
            return
    raise Fail("the client never aborted on data in %d tries: %s" % (attempt + 1, s))

def t_timewait_netns_exit():
    # inet_twsk_purge() at namespace teardown ends TIME_WAITs early; here two
    # of one socket reconnected after its close (two timewait sockets with
    # one cookie at once), both joined to their closes and both followed
    with Netns("twtwice") as ns, traced(ns) as tr:
        s = scenario(ns, "reconnect")
        ports = (s["first_port"], s["second_port"])
        recs = tr.wait_for(lambda r: all(closes(r, lport=p) for p in ports), 10, "both closes")
        cl = [one(closes(recs, lport=p), "close of port %d" % p) for p in ports]
        for c in cl:
            check(c["timewait"] and c["pid"] == s["client_pid"], "close %s" % c)
        # their TIME_WAITs end with the namespace
        run(["ip", "netns", "del", ns.name])
        recs = tr.wait_for(lambda r: all(tws(r, lport=p) for p in ports), 15, "both TIME_WAITs")
        for c in cl:
            t = one(tws(recs, lport=c["lport"]), "TIME_WAIT of port %d" % c["lport"])
            check(t["end"] == "netns-exit" and t["conn_id"] == c["conn_id"] and
                  t["pid"] == s["client_pid"], "TIME_WAIT %s of close %s" % (t, c))
        tr.stop()


def t_timewait_not_created():
    with Netns("twfull", {"net.ipv4.tcp_max_tw_buckets": "1"}) as ns, traced(ns) as tr:
        s = scenario(ns, "two-closes")
        p1, p2 = s["client_ports"]
        recs = tr.wait_for(lambda r: len(closes(r)) >= 4 and len(tws(r)) >= 1, 15,
                           "four closes and a not-created TIME_WAIT")
        c1 = one(closes(recs, lport=p1), "first client close")
        c2 = one(closes(recs, lport=p2), "second client close")
        check(c1["timewait"], "first close should get a timewait socket")
        check(not c2["timewait"], "second close cannot (table full)")
        t = one(tws(recs, lport=p2), "not-created timewait")
        check(t["end"] == "not-created", "end %s" % t["end"])
        tr.stop()


def t_pid_filter():
    with Netns("pid") as ns:
        wait_file = "/tmp/ct-pid-go-%d" % os.getpid()
        if os.path.exists(wait_file):
            os.unlink(wait_file)
        p = subprocess.Popen(ns.cmd([Ctx.bin("ctscen"), "hold", "--delay", "1000",
                                     "--wait-file", wait_file]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = json.loads(p.stdout.readline())
            spid = first["server_pid"]
            # ctscen waits 20 s for the file: held meanwhile (a start may take longer)
            with paused(p.pid) as held, Tracer(["-p", str(spid)]) as tr:
                open(wait_file, "w").close()
                held.resume()
                out, err = p.communicate(timeout=30)
                check(p.returncode == 0, "ctscen failed: %s" % err)
                s = json.loads(out.strip().splitlines()[-1])
                recs = tr.wait_for(lambda r: len(closes(r)) >= 1, 10, "the server's close")
                time.sleep(0.5)
                recs = tr.parsed()
                srv = one(closes(recs), "close record (server only)")
                check(srv["pid"] == spid, "pid %s != server %s" % (srv["pid"], spid))
                check(srv["initiator"] == "remote", "initiator %s" % srv["initiator"])
                check("CLOSE_WAIT" in srv["states"], "states %s" % srv["states"])
                check(not [r for r in recs if r.get("pid") == s["client_pid"]],
                      "a client record leaked through -p")
                tr.stop()
        finally:
            if p.poll() is None:
                p.kill()
            if os.path.exists(wait_file):
                os.unlink(wait_file)


def dwell_left(t_first, leak):
    """Seconds until a close-wait-leak server whose first line came at
    t_first closes (its dwell began just before that line)."""
    return max(0.0, t_first + leak / 1000.0 - time.time())


class paused:
    """Scenario processes stopped (SIGSTOP) until resume() while a tracer
    starts, however long that takes (TCG: tens of seconds), so that the
    scenario cannot run ahead of it or time out waiting for it: a
    close-wait-leak server cannot close (its sleep runs out meanwhile; it
    closes on SIGCONT), a ctscen parent cannot give up on its --wait-file or
    on its server.  A parent resumed after its child wrote its report finds
    the report before it looks at its deadline."""

    def __init__(self, *pids):
        self.pids = pids
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)

    def resume(self, *pids):
        for pid in pids or self.pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.resume()


def t_pid_preexisting_connection():
    # the connection exists (already in CLOSE_WAIT) before closetrace -p starts
    with Netns("pidold") as ns:
        leak = 2500
        p = subprocess.Popen(ns.cmd([Ctx.bin("ctscen"), "close-wait-leak", "--leak-ms",
                                     str(leak), "--first-line"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = json.loads(p.stdout.readline())
            t_first = time.time()
            # the server held in CLOSE_WAIT, and ctscen's own wait for its
            # close, until the tracer runs; ctscen resumed once it closed
            with paused(first["server_pid"], p.pid) as held, \
                    Tracer(["-p", str(first["server_pid"])]) as tr:
                held.resume(first["server_pid"])
                recs = tr.wait_for(lambda r: len(closes(r)) >= 1, dwell_left(t_first, leak) + 15,
                                   "the server's close")
                srv = one(closes(recs), "close of the -p process")
                check(srv["pid"] == first["server_pid"], "pid %s" % srv["pid"])
                check(srv["lport"] == first["server_port"] and srv["rport"] == first["client_port"],
                      "tuple %s" % srv)
                # first seen in CLOSE_WAIT: the peer's FIN came first
                check(srv["preexisting"] and srv["initiator"] == "remote", "record %s" % srv)
                check(srv["method"] == "fin" and srv["app_method"] == "close", "method %s" % srv)
                tr.stop()
            p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()


def t_pid_exit_stops():
    sleeper = subprocess.Popen(["sleep", "1"])
    try:
        p = subprocess.run([Ctx.bin("closetrace"), "-p", str(sleeper.pid)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=ATTACH_TIMEOUT + 20)
    finally:
        sleeper.wait()
    check(p.returncode == 0, "exit %d: %s" % (p.returncode, p.stderr))
    check("exited" in p.stderr, "no message about the process exiting: %s" % p.stderr)


def t_states_mode():
    with Netns("states") as ns, traced(ns, "--states") as tr:
        s = scenario(ns, "client-first")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two close records")
        # CLOSE -> SYN_SENT comes before the port is chosen: join by conn_id
        cid = one(closes(recs, lport=s["client_port"]), "client close")["conn_id"]
        st = [(r["oldstate"], r["newstate"]) for r in recs
              if r["event"] == "state" and r["conn_id"] == cid]
        for tr_ in (("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"),
                    ("ESTABLISHED", "FIN_WAIT1"), ("FIN_WAIT1", "FIN_WAIT2"),
                    ("FIN_WAIT2", "TIME_WAIT")):
            check(tr_ in st, "client transitions lack %s: %s" % (tr_, st))
        srv = [r for r in recs if r["event"] == "state" and r["rport"] == s["client_port"]]
        check(all(r["pid"] == s["server_pid"] for r in srv),
              "server transitions not attributed to the server: %s" %
              [(r["oldstate"], r["newstate"], r["pid"]) for r in srv])
        tr.stop()


def t_stats_at_exit():
    with Netns("stats") as ns, traced(ns, "-d", "1") as tr:
        scenario(ns, "client-first")
        rc = tr.wait_for(lambda r: any(x["event"] == "stats" for x in r), 10, "stats")
        st = [x for x in rc if x["event"] == "stats"][0]
        check(st["lost"] == 0, "lost %s" % st["lost"])
        check(tr.stop() == 0, "exit code")


def t_errors():
    cases = [
        (["--bogus"], 2, "unrecognized option"),
        (["--lport", "70000"], 2, "port out of range"),
        (["--rport", "80,,81"], 2, "invalid port list"),
        (["-p", "notapid"], 2, "invalid PID"),
        (["-d", "-3"], 2, "invalid duration"),
        (["--max-sockets", "5"], 2, "invalid --max-sockets"),
        (["-p", "2147483646"], 1, "does not exist"),
    ]
    for args, rc, msg in cases:
        p = run([Ctx.bin("closetrace")] + args, check_rc=False, timeout=20)
        check(p.returncode == rc, "%s: exit %d, want %d" % (args, p.returncode, rc))
        check(msg in p.stderr, "%s: message %r lacks %r" % (args, p.stderr, msg))
        check(p.stderr.strip().splitlines()[0].startswith("closetrace:") or args == ["--bogus"],
              "%s: message %r" % (args, p.stderr))
    # not root: drop to nobody
    p = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             Ctx.bin("closetrace")], check_rc=False, timeout=20)
    check(p.returncode == 1 and "root" in p.stderr, "as nobody: %d %r" % (p.returncode, p.stderr))


def start_line(p):
    """closetrace's "Tracing ..." line, after one line per feature the
    kernel lacks ("closetrace: this kernel lacks ...", Linux 5.10)."""
    line = p.stderr.readline()
    while line.startswith("closetrace: this kernel lacks "):
        line = p.stderr.readline()
    return line


def t_smoke_sigterm():
    p = subprocess.Popen([Ctx.bin("closetrace")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = start_line(p)
    check(line.startswith("Tracing"), "no start line: %r" % line)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=10)
    check(p.returncode == 0, "exit %d on SIGTERM: %s" % (p.returncode, err))
    check(out.startswith("PID"), "no table header: %r" % out[:80])


def t_kernel_features():
    # the probes (user/kernel_features.c) against ground truth they did not
    # produce: the kernel's version for BPF features (the matrix runs
    # Debian's kernels, which do not backport these; a distribution kernel
    # that does would differ here, not in closetrace), BTF and tracefs on disk
    p = run([Ctx.bin("closetrace"), "features"])
    got = dict(l.split(None, 1) for l in p.stdout.splitlines() if l.strip())
    want = {n: "yes" if kernel_version() >= v else "no" for n, v in FEATURE_SINCE.items()}
    want["btf"] = "yes" if os.path.exists("/sys/kernel/btf/vmlinux") else "no"
    want["syscall_tracepoints"] = ("yes" if os.path.exists(
        "/sys/kernel/tracing/events/syscalls/sys_enter_close") else "no")
    # a per-CPU variable in BTF whose address kallsyms lists (CONFIG_KALLSYMS_ALL)
    in_kallsyms = any(l.rstrip().endswith(" timer_bases") for l in open("/proc/kallsyms"))
    in_btf = "VAR 'timer_bases'" in run(["bpftool", "btf", "dump", "file",
                                         "/sys/kernel/btf/vmlinux"], timeout=60).stdout
    want["timer_bases"] = "yes" if in_kallsyms and in_btf else "no"
    bad = {n: (got.get(n), w) for n, w in want.items() if got.get(n) != w}
    check(not bad, "probed (got, want) on %s: %s" % (os.uname().release, bad))
    check(set(got) == set(want), "features printed %s, known %s" % (sorted(got), sorted(want)))


def t_classic_tracepoints():
    # the fallback for kernels without BTF tracepoints, forced here
    with Netns("classic") as ns, traced(ns, "--classic-tracepoints") as tr:
        s = scenario(ns, "client-first")
        s2 = scenario(ns, "linger0", "--port", "7002")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 4, 10, "four close records")
        c = one(closes(recs, lport=s["client_port"]), "client close")
        check(c["initiator"] == "local" and c["timewait"], "client %s" % c)
        check(c["pid"] == s["client_pid"], "client pid %s" % c["pid"])
        l = one(closes(recs, lport=s2["client_port"]), "linger0 close")
        check(l["initiator"] == "local-reset", "linger0 initiator %s" % l["initiator"])
        tr.stop()

def t_old_kernel():
    # the paths of a kernel without the optional BPF features, as Debian's
    # 5.10 (counter ids, a hash for connect(), raw sys_enter/sys_exit
    # hooks), forced here
    with Netns("oldk", {"net.ipv4.tcp_tw_reuse": "1"}) as ns, traced(ns, "--old-kernel") as tr:
        s = scenario(ns, "tw-reuse")
        s2 = scenario(ns, "inherit", "--hold-ms", "300")
        s3 = scenario(ns, "restart", "--port", "7005")
        recs = tr.wait_for(lambda r: len(tws(r, lport=s["client_port"])) >= 1 and
                           any(x["event"] == "close-deferred" for x in r) and
                           any(x["event"] == "bind-conflict" for x in r), 15,
                           "a reused TIME_WAIT, a deferred close and a bind conflict")
        t = tws(recs, lport=s["client_port"])[0]
        check(t["end"] == "reused" and t["reuse_pid"] == s["reuse_pid"], "timewait %s" % t)
        first = [c for c in closes(recs, lport=s["client_port"]) if c["timewait"]]
        check(first and first[0]["conn_id"] == t["conn_id"] and t["pid"] == s["first_pid"],
              "close %s and its TIME_WAIT %s" % (first, t))
        d = [x for x in recs if x["event"] == "close-deferred"][0]
        check(d["pid"] == s2["parent_pid"], "deferred close %s" % d)
        bc = [x for x in recs if x["event"] == "bind-conflict"][0]
        check(bc["pid"] == s3["second_server_pid"] and bc["lport"] == 7005, "conflict %s" % bc)
        tr.stop()


@requires("socket cookies in tracing programs (Linux 5.12)",
          probe=lambda: kernel_feature("socket_cookie") and kernel_feature("cmpxchg"))
def t_conn_id_is_socket_cookie():
    # conn_id is the kernel's socket cookie: ss -e shows it as sk:<hex>
    with Netns("cookie") as ns, traced(ns) as tr:
        p = subprocess.Popen(ns.cmd([Ctx.bin("ctscen"), "inherit", "--hold-ms", "1500"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cookies, deadline = {}, time.time() + 10
        while not cookies and time.time() < deadline and p.poll() is None:
            out = ns.exec_(["ss", "-tneH", "state", "established"]).stdout
            for line in out.splitlines():
                f, m = line.split(), re.search(r"\bsk:([0-9a-f]+)", line)
                if m and len(f) >= 4:
                    cookies[(int(f[2].rsplit(":", 1)[1]), int(f[3].rsplit(":", 1)[1]))] = int(m.group(1), 16)
            time.sleep(0.05)
        out, err = p.communicate(timeout=30)
        s = json.loads([l for l in out.splitlines() if l.strip()][-1])
        key = (s["conn_lport"], s["conn_rport"])
        check(key in cookies, "ss did not show %s: %s" % (key, cookies))
        real = tr.wait_for(lambda r: closes(r, lport=key[0], rport=key[1]), 10, "the close")
        c = one(closes(real, lport=key[0], rport=key[1]), "close")
        check(c["conn_id"] == cookies[key], "conn_id %s, cookie %s" % (c["conn_id"], cookies[key]))
        tr.stop()


SLOT_CHURN = r"""
import json, os, resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
L = socket.socket()
L.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
L.bind(("127.0.0.1", 7100))
L.listen(4096)
def pair():
    c = socket.create_connection(("127.0.0.1", 7100), timeout=5)
    return c, L.accept()[0]
held = [pair() for _ in range(%(held)d)]
# the client closes first: the server closes once it has read the FIN (EOF),
# else (slow machines) the two FINs may cross and both sides be simultaneous
def close_pair(c, s):
    c.close()
    s.settimeout(5)
    s.recv(1)
    s.close()
for _ in range(%(short)d):
    close_pair(*pair())
later = [pair() for _ in range(%(held)d)]
ports = lambda ps: [c.getsockname()[1] for c, s in ps]
print(json.dumps({"held": ports(held), "later": ports(later)}), flush=True)
deadline = time.time() + 20
while not os.path.exists(sys.argv[1]) and time.time() < deadline:
    time.sleep(0.02)
for c, s in held + later:
    close_pair(c, s)
"""


def bpf_global(pid, name):
    """A global variable of a tracer's BPF .bss, as bpftool formats it."""
    def find(o):
        if isinstance(o, dict):
            if name in o:
                return o[name]
            o = list(o.values())
        if isinstance(o, list):
            for v in o:
                r = find(v)
                if r is not None:
                    return r
        return None
    for fd in os.listdir("/proc/%d/fdinfo" % pid):
        try:
            m = re.search(r"map_id:\s+(\d+)", open("/proc/%d/fdinfo/%s" % (pid, fd)).read())
        except OSError:
            continue
        if not m:
            continue
        show = json.loads(run(["bpftool", "-j", "map", "show", "id", m.group(1)]).stdout)
        if show.get("name", "").endswith(".bss"):
            return find(json.loads(run(["bpftool", "-j", "map", "dump", "id", m.group(1)]).stdout))
    raise Fail("no .bss map with %s in process %d" % (name, pid))


def t_socket_slot_collisions():
    # --max-sockets 1024: 1024 slots by cookie.  300 connections held
    # through 1500 short ones and 300 more opened after them: 1200 sockets
    # alive at once for 1024 slots, so (pigeonhole) at least 176 go to the
    # hash table (as large again), whatever the cookies; some outlive the
    # sockets holding their slots.  Every record must still be whole, and
    # the table empty after.  Kernels without slots (before 5.12) run the
    # same churn with a table that holds every socket and check every record.
    n, held = 1500, 600
    slots = kernel_feature("socket_cookie") and kernel_feature("cmpxchg")
    d = tmpdir("slots")
    go = os.path.join(d, "go")
    # tcp_tw_reuse 0: no later connection may take the port of a short one
    # in TIME_WAIT (the default 2 allows it on loopback after a second, which
    # a slow machine, TCG, reaches): one client close per port
    with Netns("slots", {"net.ipv4.tcp_tw_reuse": "0"}) as ns, \
            traced(ns, "--max-sockets", "1024" if slots else "4096") as tr:
        p = subprocess.Popen(ns.cmd(["python3", "-c", SLOT_CHURN % {"held": held // 2, "short": n}, go]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            s = json.loads(p.stdout.readline() or "{}")
            if slots:
                spilled = bpf_global(tr.proc.pid, "socks_spilled")
                check(spilled and spilled >= 2 * held - 1024,
                      "%s sockets in the hash table, want %d or more" % (spilled, 2 * held - 1024))
        finally:
            open(go, "w").close()
            out, err = p.communicate(timeout=30)
        check(p.returncode == 0, "churn script failed: %s" % err.strip()[-300:])
        want = 2 * (n + held)
        tr.wait_for(lambda r: len(closes(r)) >= want, 30, "%d closes" % want)
        # the last sockets' entries go when they are destroyed, just after their closes
        if slots:
            deadline = time.time() + 10
            while (spilled := bpf_global(tr.proc.pid, "socks_spilled")) != 0 and \
                    time.time() < deadline:
                time.sleep(0.2)
            check(spilled == 0, "hash table entries left behind: %s" % spilled)
        check(tr.stop() == 0, "exit code")
        recs = tr.parsed()
        cl = closes(recs)
        check(len(cl) == want, "%d closes, want %d" % (len(cl), want))
        check(len({c["conn_id"] for c in cl}) == want, "conn_ids not distinct")
        by_l, by_r = {}, {}
        for c in cl:
            by_l.setdefault(c["lport"], []).append(c)
            by_r.setdefault(c["rport"], []).append(c)
        for port in s["held"] + s["later"]:
            c = one(by_l.get(port, []), "client close of %d" % port)
            srv = one(by_r.get(port, []), "server close of %d" % port)
            check(c["initiator"] == "local" and srv["initiator"] == "remote",
                  "initiators %s/%s" % (c["initiator"], srv["initiator"]))
            check(c["timewait"] is True and srv["timewait"] is False, "TIME_WAIT on the wrong side")
        for c in cl:
            check("ESTABLISHED" in c["states"], "close lacks ESTABLISHED: %s" % c)
        check(sum(c["timewait"] is True for c in cl) == n + held, "TIME_WAIT count")
        st = [x for x in recs if x["event"] == "stats"]
        check(st and st[0]["socks_map_full"] == 0, "stats %s" % st)
    run(["rm", "-rf", d])


# ---------------------------------------------------------------- recording


def replay(path, *args, as_user=None, timeout=60):
    argv = [Ctx.bin("closetrace"), "-r", path] + list(args)
    if as_user:
        argv = ["setpriv", "--reuid=%d" % as_user, "--regid=%d" % as_user, "--clear-groups"] + argv
    return run(argv, check_rc=False, timeout=timeout)


def tmpdir(name):
    d = "/tmp/ct-test-%s-%d" % (name, os.getpid())
    run(["rm", "-rf", d])
    os.makedirs(d)
    return d


def record_some(name, extra=(), scenarios=(("client-first",), ("linger0", "--port", "7002"))):
    """Record scenarios with -w F --print --json; return (path, live stdout lines)."""
    d = tmpdir(name)
    path = os.path.join(d, "trace.ct")
    with Netns(name) as ns, traced(ns, "-w", path, "--print", *extra) as tr:
        for sc in scenarios:
            scenario(ns, *sc)
        if "--summary" in extra:
            time.sleep(0.5)  # no records printed: give the last closes time
        else:
            tr.wait_for(lambda r: len(closes(r)) >= 2 * len(scenarios), 10, "the closes")
            time.sleep(0.3)
        check(tr.stop() == 0, "recorder exit code")
        return path, list(tr.lines), d


def t_record_replay_identical():
    path, live, d = record_some("recjson")
    st = os.stat(path)
    check(st.st_mode & 0o777 == 0o600, "recording mode %o, want 0600" % (st.st_mode & 0o777))
    p = replay(path, "--json")
    check(p.returncode == 0, "replay exit %d: %s" % (p.returncode, p.stderr))
    check(p.stdout == "".join(live), "replay differs from the live run:\nlive:\n%s\nreplay:\n%s" %
          ("".join(live)[:1500], p.stdout[:1500]))
    # the table too, and filters on replay
    p2 = replay(path, "--lport", "7002")
    check(p2.returncode == 0 and "local-reset" not in p2.stdout.split("\n", 1)[0], "table replay")
    check(all("7002" in l for l in p2.stdout.splitlines()[1:]), "--lport on replay: %s" % p2.stdout)
    # no root needed: a copy readable by nobody
    os.chmod(d, 0o755)
    os.chmod(path, 0o644)
    p3 = replay(path, "--json", as_user=65534)
    check(p3.returncode == 0 and p3.stdout == p.stdout, "replay as nobody: %d %s" % (p3.returncode, p3.stderr))
    run(["rm", "-rf", d])


def t_recorder_sigkill():
    d = tmpdir("kill")
    path = os.path.join(d, "trace.ct")
    with Netns("kill") as ns, traced(ns, "-w", path, "--print") as tr:
        scenario(ns, "client-first")
        scenario(ns, "client-first")
        tr.wait_for(lambda r: len(closes(r)) >= 4, 10, "the closes")
        time.sleep(1.5)  # a complete block reaches the file at least every second
        tr.proc.kill()
        tr.proc.wait(timeout=10)
    p = replay(path, "--json")
    check(p.returncode == 0, "replay of a killed recording: exit %d %s" % (p.returncode, p.stderr))
    recs = [json.loads(l) for l in p.stdout.splitlines()]
    check(len(closes(recs)) >= 4, "records lost: %s" % summarize(recs))
    check("truncated" in p.stderr or not p.stderr, "stderr %r" % p.stderr)
    run(["rm", "-rf", d])


def cut_points(data, header):
    """Where to cut a recording: every byte; under VMTEST (one replay costs
    a quarter of a second there, and the reader is the same user-space code
    the host run cuts at every byte) the first bytes, every 16th of the
    header, every byte of each block header and around each block's end,
    and every 16th byte of block data."""
    if not VMTEST:
        return range(len(data))
    pts = set(range(0, 16)) | set(range(0, header, 16)) | set(range(header - 4, header + 1))
    b = header
    while b + 24 <= len(data):
        end = b + 24 + int.from_bytes(data[b + 12:b + 16], "little")
        pts |= set(range(b, b + 25)) | set(range(b + 24, end, 16)) | set(range(end - 3, end + 1))
        b = end
    return sorted(p for p in pts if p < len(data))


def t_truncated_and_corrupt_files():
    path, live, d = record_some("trunc", scenarios=[("client-first",)] * 3)
    data = open(path, "rb").read()
    full = replay(path, "--json").stdout.splitlines()
    cut = os.path.join(d, "cut.ct")
    header = 8 + 4 * 4 + 8 * 3 + 64 + 64 + 256
    # cut at every byte of the file: never a crash, a prefix of the records
    for n in cut_points(data, header):
        open(cut, "wb").write(data[:n])
        p = replay(cut, "--json")
        check(p.returncode in (0, 1), "cut at %d: exit %d (crash?) %s" % (n, p.returncode, p.stderr))
        lines = p.stdout.splitlines()
        check(lines == full[:len(lines)], "cut at %d: output is not a prefix" % n)
        if n < header:
            check(p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1,
                  "cut in the header at %d: %d %r" % (n, p.returncode, p.stderr))
        else:
            check(p.returncode == 0, "cut at %d: exit %d %r" % (n, p.returncode, p.stderr))
            if n < len(data):
                check("truncated" in p.stderr, "cut at %d: no warning: %r" % (n, p.stderr))
    # a flipped byte inside the first block
    bad = bytearray(data)
    bad[header + 30] ^= 0xff
    open(cut, "wb").write(bytes(bad))
    p = replay(cut, "--json")
    check(p.returncode == 1 and "corrupt" in p.stderr, "corrupt block: %d %r" % (p.returncode, p.stderr))
    # a foreign file, an empty one, a newer format version
    p = replay("/bin/sh")
    check(p.returncode == 1 and "not a closetrace recording" in p.stderr, "foreign: %r" % p.stderr)
    open(cut, "wb").write(b"")
    p = replay(cut)
    check(p.returncode == 1 and "empty" in p.stderr, "empty: %r" % p.stderr)
    newer = bytearray(data)
    newer[8:12] = (99).to_bytes(4, "little")
    open(cut, "wb").write(bytes(newer))
    p = replay(cut)
    check(p.returncode == 1 and "newer" in p.stderr, "newer: %r" % p.stderr)
    p = replay(os.path.join(d, "missing.ct"))
    check(p.returncode == 1 and "cannot open" in p.stderr, "missing: %r" % p.stderr)
    run(["rm", "-rf", d])


def t_summary_matches_records():
    path, live, d = record_some(
        "summary", extra=("--summary", "--json"),
        scenarios=[("client-first",), ("server-first", "--port", "7002"),
                   ("linger0", "--port", "7003"), ("unread", "--port", "7004")])
    # with --summary the recorder prints the kernel's summary at exit, not records
    kern = [json.loads(l) for l in live if '"event":"summary"' in l]
    check(len(kern) == 1, "no summary from the live run: %s" % live[-3:])
    kern = kern[0]
    p = replay(path, "--summary", "--json")
    check(p.returncode == 0, "replay --summary: %s" % p.stderr)
    user = [json.loads(l) for l in p.stdout.splitlines() if '"event":"summary"' in l][0]
    check(kern == user, "kernel and replayed summaries differ:\n%s\n%s" % (kern, user))
    recs = [json.loads(l) for l in replay(path, "--json").stdout.splitlines()]
    cl = closes(recs)
    check(kern["closes"] == len(cl) == 8, "closes %s vs %d records" % (kern["closes"], len(cl)))
    for ini in ("local", "remote", "local-reset", "remote-reset"):
        n = len([r for r in cl if r["initiator"] == ini])
        check(kern["initiator"][ini] == n, "%s: summary %s, records %d" % (ini, kern["initiator"][ini], n))
    check(kern["tw_created"] == len([r for r in cl if r["timewait"]]), "tw_created")
    check(kern["rst_sent"] == len([r for r in cl if r["rst_sent"]]), "rst_sent")
    n_fw1 = sum(c for _, c in kern["histograms_ns"].get("FIN_WAIT1", []))
    check(n_fw1 == len([r for r in cl if "FIN_WAIT1" in r["states"]]), "FIN_WAIT1 histogram count")
    tops = {t["pid"]: t for t in kern["top_processes"]}
    for r in cl:
        check(r["pid"] in tops, "pid %s missing from top_processes" % r["pid"])
    # servers' clients count by address alone, clients' servers by address and port
    eps = {e["endpoint"]: e["closes"] for e in kern["top_remote"]}
    check(eps.get("127.0.0.1:*") == len([r for r in cl if r["accepted"]]) == 4 and
          all(eps.get("127.0.0.1:%d" % p) == 1 for p in (7001, 7002, 7003, 7004)),
          "endpoints %s" % eps)
    run(["rm", "-rf", d])


def t_summary_live_only():
    with Netns("sumlive") as ns, traced(ns, "--summary") as tr:
        scenario(ns, "client-first")
        scenario(ns, "client-first")
        time.sleep(0.5)
        check(tr.stop() == 0, "exit code")
        out = [json.loads(l) for l in tr.lines]
        check([o["event"] for o in out] == ["summary", "stats"], "output %s" % [o["event"] for o in out])
        check(out[0]["closes"] == 4 and out[0]["tw_created"] == 2, "summary %s" % out[0])
        check(out[1]["records"] == 0, "records sent in --summary mode: %s" % out[1])


def t_full_disk():
    d = tmpdir("full")
    run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", d])
    try:
        path = os.path.join(d, "trace.ct")
        with Netns("full") as ns:
            tr = Tracer(["--netns", str(ns.inode), "-w", path])
            with tr:
                # until the recorder gives up: ~25 scenarios, a second each under TCG
                deadline = time.time() + (180 if VMTEST else 60)
                while tr.proc.poll() is None and time.time() < deadline:
                    scenario(ns, "client-first")
                tr.proc.wait(timeout=10)
            check(tr.proc.returncode == 1, "exit %s on a full disk" % tr.proc.returncode)
            err = tr.proc.stderr.read()
            check("No space left on device" in err, "stderr %r" % err)
        p = replay(path)
        check(p.returncode == 0, "the partial recording replays: %s" % p.stderr)
    finally:
        run(["umount", d], check_rc=False)
        run(["rm", "-rf", d], check_rc=False)


def t_rotation():
    d = tmpdir("rotate")
    path = os.path.join(d, "trace.ct")
    with Netns("rotate") as ns, traced(ns, "-w", path, "--states", "--rotate", "1K",
                                       "--rotate-count", "2") as tr:
        for i in range(12):
            scenario(ns, "client-first")
            time.sleep(0.25)  # several flushes (blocks) per file
        check(tr.stop() == 0, "exit code")
    files = sorted(os.listdir(d))
    check(files == ["trace.ct", "trace.ct.1", "trace.ct.2"], "files %s" % files)
    total = 0
    for f in files:
        p = replay(os.path.join(d, f), "--json")
        check(p.returncode == 0 and not p.stderr, "%s does not replay cleanly: %s" % (f, p.stderr))
        total += p.stdout.count('"event":"state"')
    check(total > 0, "no records in the rotated files")
    run(["rm", "-rf", d])


def t_write_stdout_pipe():
    with Netns("wpipe") as ns:
        d = tmpdir("wpipe")
        path = os.path.join(d, "piped.ct")
        out = open(path, "wb")
        p = subprocess.Popen([Ctx.bin("closetrace"), "--netns", str(ns.inode), "-w", "-"],
                             stdout=out, stderr=subprocess.PIPE, text=True)
        try:
            line = start_line(p)
            check(line.startswith("Tracing"), "no start line: %r" % line)
            scenario(ns, "client-first")
            time.sleep(1.2)
            p.send_signal(signal.SIGINT)
            p.wait(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
            out.close()
        check(p.returncode == 0, "exit %d" % p.returncode)
        r = replay(path, "--json")
        check(r.returncode == 0 and len(closes([json.loads(l) for l in r.stdout.splitlines()])) == 2,
              "replay of -w -: %s %s" % (r.returncode, r.stdout[:300]))
        run(["rm", "-rf", d])


def t_fuzz_reader_smoke():
    fz = Ctx.bin("fuzz_reader")
    if not os.path.exists(fz):
        raise Skip("fuzz_reader not built (make fuzz)") if not CI else Fail("fuzz_reader not built")
    # in a TCG guest 30 s fuzz about a second's worth: a smoke run is enough there
    seconds = os.environ.get("FUZZ_SECONDS", "5" if VMTEST else "30")
    corpus = tmpdir("fuzz")
    p = run([fz, "-max_total_time=" + seconds, "-max_len=65536", "-artifact_prefix=%s/" % corpus,
             corpus, os.path.join(ROOT, "tests/fuzz/corpus")], check_rc=False, timeout=int(seconds) + 120)
    check(p.returncode == 0, "the fuzzer found a crash:\n%s" % p.stderr[-2000:])
    run(["rm", "-rf", corpus])


def t_fuzz_regressions():
    # inputs that once crashed or confused the reader, kept as regression tests
    fz = Ctx.bin("fuzz_reader")
    if not os.path.exists(fz):
        raise Skip("fuzz_reader not built") if not CI else Fail("fuzz_reader not built")
    rdir = os.path.join(ROOT, "tests/fuzz/regressions")
    files = [os.path.join(rdir, f) for f in sorted(os.listdir(rdir))] if os.path.isdir(rdir) else []
    files += [os.path.join(ROOT, "tests/fuzz/corpus", f)
              for f in sorted(os.listdir(os.path.join(ROOT, "tests/fuzz/corpus")))]
    p = run([fz] + files, check_rc=False, timeout=120)
    check(p.returncode == 0, "a regression input fails:\n%s" % p.stderr[-2000:])


# ---------------------------------------------------------------- how and why


def t_methods_basic():
    with Netns("methods") as ns, traced(ns) as tr:
        a = scenario(ns, "client-first")
        b = scenario(ns, "linger0", "--port", "7002")
        c = scenario(ns, "unread", "--port", "7003")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 6, 10, "six closes")
        ca = one(closes(recs, lport=a["client_port"]), "client close")
        sa = one(closes(recs, rport=a["client_port"]), "server close")
        check(ca["method"] == "close", "client method %s" % ca["method"])
        check(sa["method"] == "fin" and sa["app_method"] == "close", "server %s" % sa)
        check(sa["app_close_ns"] == sa["states"]["CLOSE_WAIT"], "app_close_ns")
        cb = one(closes(recs, lport=b["client_port"]), "linger0 close")
        check(cb["method"] == "linger-reset", "linger0 method %s" % cb["method"])
        check(one(closes(recs, rport=b["client_port"]), "peer")["method"] == "rst", "peer of linger0")
        cc = one(closes(recs, lport=c["client_port"]), "unread close")
        check(cc["method"] == "unread-data-reset", "unread method %s" % cc["method"])
        tr.stop()


def t_method_shutdown():
    with Netns("shut") as ns, traced(ns) as tr:
        s = scenario(ns, "shutdown")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 2, 10, "two closes")
        c = one(closes(recs, lport=s["client_port"]), "client close")
        check(c["method"] == "shutdown" and c["initiator"] == "local", "client %s" % c)
        check(c["pid"] == s["client_pid"], "pid %s" % c["pid"])
        tr.stop()


def t_method_exit_and_kill():
    with Netns("exit") as ns, traced(ns) as tr:
        k = scenario(ns, "killed", "--signal", "9")
        e = scenario(ns, "exit", "--port", "7002")
        recs = tr.wait_for(lambda r: len(closes(r)) >= 4, 10, "four closes")
        ck = one(closes(recs, lport=k["client_port"]), "killed close")
        check(ck["method"] == "exit" and ck.get("exit_signal") == 9, "killed: %s" % ck)
        check(ck["pid"] == k["killed_pid"], "killed pid %s" % ck["pid"])
        ce = one(closes(recs, lport=e["client_port"]), "exit close")
        check(ce["method"] == "exit" and ce.get("exit_signal") == 0, "exit: %s" % ce)
        tr.stop()


def t_method_linger_wait():
    with Netns("lwait") as ns, traced(ns) as tr:
        a = scenario(ns, "linger-wait", "--linger", "1", "--peer-acks")
        b = scenario(ns, "linger-wait", "--linger", "1", "--peer-silent", "--port", "7002")
        recs = tr.wait_for(lambda r: len(closes(r, lport=a["client_port"])) == 1 and
                           len(closes(r, lport=b["client_port"])) == 1, 40, "the lingering closes")
        ca = one(closes(recs, lport=a["client_port"]), "acked close")
        check(ca["method"] == "linger-wait" and ca["linger"] == "acked", "acked: %s" % ca)
        check(ca["linger_ns"] == 1000000000, "linger_ns %s" % ca["linger_ns"])
        cb = one(closes(recs, lport=b["client_port"]), "silent close")
        check(cb["method"] == "linger-wait" and cb["linger"] == "timeout", "silent: %s" % cb)
        tr.stop()


def t_close_deferred_inherited():
    # the holders are found by a /proc scan after the deferred close: the
    # child must still hold the socket then (a slow guest scans later)
    with Netns("inherit") as ns, traced(ns) as tr:
        s = scenario(ns, "inherit", "--hold-ms", "5000" if VMTEST else "1500")
        recs = tr.wait_for(lambda r: len([x for x in r if x["event"] == "close-deferred"]) >= 2 and
                           len(closes(r, lport=s["conn_lport"], rport=s["conn_rport"])) == 1,
                           15, "two deferred closes and the child's real close")
        deferred = [x for x in recs if x["event"] == "close-deferred"]
        states = sorted(d["state"] for d in deferred)
        check(states == ["ESTABLISHED", "LISTEN"], "deferred states %s" % states)
        for d in deferred:
            check(d["pid"] == s["parent_pid"], "closer %s != parent %s" % (d["pid"], s["parent_pid"]))
            check(d["refs_left"] >= 1, "refs_left %s" % d["refs_left"])
        holders = [x for x in recs if x["event"] == "holder"]
        check(holders and all(h["pid"] == s["child_pid"] for h in holders),
              "holders %s, child %s" % ([(h["pid"], h["comm"]) for h in holders], s["child_pid"]))
        real = one(closes(recs, lport=s["conn_lport"], rport=s["conn_rport"]), "the real close")
        check(real["pid"] == s["child_pid"] and real["method"] == "exit",
              "real close by %s (%s), want the child %s" % (real["pid"], real["method"], s["child_pid"]))
        tr.stop()


def t_bind_conflict_timewait():
    with Netns("restart") as ns, traced(ns) as tr:
        s = scenario(ns, "restart", "--port", "7005")
        # the old server had no SO_REUSEADDR: its TIME_WAITs block even a new
        # SO_REUSEADDR socket (inet_bind_conflict() wants it on both sides)
        check(s["bind_errno"] == 98, "scenario %s" % s)
        recs = tr.wait_for(lambda r: any(x["event"] == "bind-conflict" for x in r) and
                           any(x["event"] == "port-user" for x in r), 10, "the bind conflict")
        bc = [x for x in recs if x["event"] == "bind-conflict"][0]
        check(bc["pid"] == s["second_server_pid"] and bc["syscall"] == "bind", "conflict %s" % bc)
        check(bc["lport"] == 7005, "port %s" % bc["lport"])
        # as many TIME_WAITs as the scenario saw in sock_diag before the restart
        tw = [x for x in recs if x["event"] == "port-user" and x["state"] == "TIME_WAIT"]
        check(s["tw_count"] >= 1 and tw and tw[0]["count"] == s["tw_count"],
              "TIME_WAIT users %s, scenario saw %d" % (tw, s["tw_count"]))
        check(0 < tw[0]["last_expires_ns"] <= 60e9, "expiry %s" % tw[0])
        tr.stop()
        # why-busy says the same without tracing
        p = run(ns.cmd([Ctx.bin("closetrace"), "why-busy", "7005", "--json"]))
        wb = json.loads(p.stdout)
        check(wb["timewait"]["count"] == s["tw_count"] or wb["counts"]["listen"] == 1,
              "why-busy %s" % wb)


def t_bind_conflict_held_port():
    with Netns("held") as ns, traced(ns) as tr:
        s = scenario(ns, "held-port", "--port", "7006", "--hold-ms", "3000")
        recs = tr.wait_for(lambda r: any(x["event"] == "port-user" and x["state"] == "LISTEN"
                                         for x in r), 10, "the listener holding the port")
        bc = [x for x in recs if x["event"] == "bind-conflict"][0]
        check(bc["pid"] == s["binder_pid"], "conflict by %s, binder %s" % (bc["pid"], s["binder_pid"]))
        pu = [x for x in recs if x["event"] == "port-user" and x["state"] == "LISTEN"][0]
        check(pu["pid"] == s["holder_pid"], "holder %s, want %s" % (pu["pid"], s["holder_pid"]))
        tr.stop()


def t_why_busy_errors():
    for args, rc in ((["why-busy"], 2), (["why-busy", "70000"], 2), (["why-busy", "x"], 2),
                     (["why-busy", "80", "--bogus"], 2)):
        p = run([Ctx.bin("closetrace")] + args, check_rc=False)
        check(p.returncode == rc and len(p.stderr.strip().splitlines()) == 1,
              "%s: %d %r" % (args, p.returncode, p.stderr))
    with Netns("whyfree") as ns:
        p = run(ns.cmd([Ctx.bin("closetrace"), "why-busy", "7999", "--json"]))
        check(json.loads(p.stdout)["verdict"] == "free", "a free port: %s" % p.stdout)


def t_watch_close_wait():
    threshold = 1.0
    with Netns("watch") as ns, traced(ns, "--watch", str(threshold)) as tr:
        p = subprocess.Popen(ns.cmd([Ctx.bin("ctscen"), "close-wait-leak", "--leak-ms", "6500"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
        check(p.returncode == 0, "ctscen: %s" % err)
        s = json.loads(out.strip().splitlines()[-1])
        # the server's CLOSE_WAIT (the client's orphaned FIN_WAIT2 is watched too)
        sp = s["server_port"]
        recs = tr.wait_for(lambda r: any(x["event"] == "watch" and x["closed"] and x["lport"] == sp
                                         for x in r), 10, "the watched socket's close")
        w = [x for x in recs if x["event"] == "watch" and x["lport"] == sp]
        crossed = [x for x in w if not x["closed"]]
        check(len(crossed) == 1, "reported %d times: %s" % (len(crossed), w))
        c = crossed[0]
        check(c["pid"] == s["server_pid"] and c["state"] == "CLOSE_WAIT", "watch %s" % c)
        # within the threshold plus one second of the peer's FIN
        late = (c["ts_ns"] - s["server_eof_ns"]) / 1e9
        check(threshold <= late + 0.05 and late <= threshold + 1.0, "reported %.2f s after the FIN" % late)
        closed = [x for x in w if x["closed"]][0]
        check(abs(closed["age_ns"] / 1e9 - 6.5) < 0.5, "closed age %s" % closed["age_ns"])
        counts = [x for x in recs if x["event"] == "watch-count" and x["state"] == "CLOSE_WAIT"]
        check(counts and counts[0]["pid"] == s["server_pid"], "per-process count %s" % counts)
        tr.stop()



def t_watch_orphan_fin_wait2():
    # the client closes first and the server never answers with its FIN:
    # the client's connection waits in FIN_WAIT2 inside a timewait socket
    # (orphaned, tcp_fin_timeout 60 s here), which --watch reports with
    # its owner, and says when the server's FIN ends it
    threshold, leak = 1.0, 4000
    with Netns("watchfw2", {"net.ipv4.tcp_fin_timeout": "60"}) as ns, \
            traced(ns, "--watch", str(threshold)) as tr:
        s = scenario(ns, "close-wait-leak", "--leak-ms", str(leak), timeout=30)
        cp = s["client_port"]
        recs = tr.wait_for(lambda r: any(x["event"] == "watch" and x["closed"] and
                                         x["lport"] == cp for x in r), 10,
                           "the client's FIN_WAIT2 to end")
        w = [x for x in recs if x["event"] == "watch" and x["lport"] == cp]
        crossed = [x for x in w if not x["closed"]]
        check(len(crossed) == 1 and crossed[0]["state"] == "FIN_WAIT2", "watch %s" % w)
        c = crossed[0]
        check(c["pid"] == s["client_pid"], "owner %s, client %s" % (c["pid"], s["client_pid"]))
        check(c["rport"] == s["server_port"] and not c["age_at_least"], "watch %s" % c)
        # crossed the threshold within a tick (0.5 s) plus the dump's time of the close
        late = (c["ts_ns"] - s["client_close_ns"]) / 1e9
        check(threshold <= late + 0.05 and late <= threshold + 1.0, "reported %.2f s after close()" % late)
        end = [x for x in w if x["closed"]][0]
        # it ended when the server's FIN came (the server's close)
        check(abs(end["ts_ns"] - s["server_close_ns"]) / 1e9 <= 1.0 and
              abs(end["age_ns"] / 1e9 - leak / 1000.0) <= 1.0, "end %s, scenario %s" % (end, s))
        tr.stop()


def t_watch_netns_filter():
    # --watch under --netns: the kernel side's table holds the sockets of
    # every namespace; a leak in another one is not this run's
    with Netns("watchns") as ns, Netns("watchns2") as other, traced(ns, "--watch", "1") as tr:
        argv = [Ctx.bin("ctscen"), "close-wait-leak", "--leak-ms", "2500"]
        p2 = subprocess.Popen(other.cmd(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        try:
            s = scenario(ns, "close-wait-leak", "--leak-ms", "2500", timeout=30)
            out2, err2 = p2.communicate(timeout=30)
        finally:
            if p2.poll() is None:
                p2.kill()
        check(p2.returncode == 0, "ctscen in the other namespace: %s" % err2)
        recs = tr.wait_for(lambda r: any(x["event"] == "watch" and x["closed"] and
                                         x["lport"] == s["server_port"] for x in r), 10,
                           "this namespace's CLOSE_WAIT to end")
        w = [x for x in recs if x["event"] in ("watch", "watch-count")]
        check(all(x["netns"] == ns.inode for x in w),
              "--netns %d --watch reported other namespaces: %s" %
              (ns.inode, [(x["event"], x["netns"], x["lport"]) for x in w if x["netns"] != ns.inode]))
        tr.stop()


def t_watch_existing():
    # a socket already in CLOSE_WAIT when tracing starts: "age at least"
    with Netns("watchold") as ns:
        leak = 5000
        p = subprocess.Popen(ns.cmd([Ctx.bin("ctscen"), "close-wait-leak", "--leak-ms",
                                     str(leak), "--first-line"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = json.loads(p.stdout.readline())
            t_first = time.time()
            # as in pid_preexisting_connection: held until the tracer runs
            with paused(first["server_pid"], p.pid) as held, \
                    traced(ns, "--watch", "1") as tr:
                # still open when it crosses the threshold, however slow the start
                # the server's CLOSE_WAIT (the client's orphaned FIN_WAIT2 is watched too)
                sp = first["server_port"]
                tr.wait_for(lambda r: any(x["event"] == "watch" and x["lport"] == sp for x in r), 20,
                            "the old CLOSE_WAIT socket to cross --watch 1")
                held.resume(first["server_pid"])
                recs = tr.wait_for(lambda r: any(x["event"] == "watch" and x["closed"] and
                                                 x["lport"] == sp for x in r),
                                   dwell_left(t_first, leak) + 20, "the old CLOSE_WAIT socket's close")
                w = [x for x in recs if x["event"] == "watch" and x["lport"] == sp]
                crossed = [x for x in w if not x["closed"]]
                check(len(crossed) == 1 and crossed[0]["age_at_least"], "watch %s" % w)
                check(crossed[0]["pid"] == first["server_pid"], "owner %s" % crossed[0])
                check(crossed[0]["lport"] == first["server_port"] and
                      crossed[0]["rport"] == first["client_port"], "tuple %s" % crossed[0])
                tr.stop()
            p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()


def t_prefork_worker_owner():
    # pre-forked workers accept from their parent's listener, which exists
    # before tracing starts: each accepted connection belongs to the
    # worker whose accept() returned it (records, --watch, -p)
    with Netns("prefork") as ns:
        leak = 4000
        wait_file = "/tmp/ct-prefork-go-%d" % os.getpid()
        if os.path.exists(wait_file):
            os.unlink(wait_file)
        p = subprocess.Popen(ns.cmd([Ctx.bin("ctscen"), "prefork", "--leak-ms", str(leak),
                                     "--wait-file", wait_file]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = json.loads(p.stdout.readline())
            w1, w2 = first["worker_pids"]
            with paused(p.pid, w1, w2, first["client_pid"]) as held, \
                    traced(ns, "--watch", "1") as tr, Tracer(["-p", str(w1), "--watch", "1"]) as tp, \
                    traced(ns, "--watch", "1", "--no-syscalls") as tn:
                open(wait_file, "w").close()
                held.resume()
                out, err = p.communicate(timeout=60)
                check(p.returncode == 0, "ctscen failed: %s" % err)
                s = json.loads(out.strip().splitlines()[-1])
                check(s["reset_worker_read"] == "reset" and s["leak_worker_read"] == "eof"
                      and s["close_wait_seen"], "scenario %s" % s)
                sp = s["server_port"]
                recs = tr.wait_for(lambda r: len(closes(r, lport=sp)) >= 2 and any(
                    x["event"] == "watch" and x.get("closed") for x in r), 15,
                    "both workers' closes and the watch report of the leak")
                rst = one(closes(recs, lport=sp, rport=s["reset_port"]), "reset connection")
                check(rst["pid"] == s["reset_worker_pid"] and rst["comm"] == s["reset_worker_comm"],
                      "reset connection owned by %s/%s, worker %s (parent %s)" %
                      (rst["pid"], rst["comm"], s["reset_worker_pid"], s["parent_pid"]))
                check(rst["initiator"] == "remote-reset" and rst["accepted"], "reset record %s" % rst)
                lk = one(closes(recs, lport=sp, rport=s["leak_port"]), "leaked connection")
                check(lk["pid"] == s["leak_worker_pid"] and lk["comm"] == s["leak_worker_comm"],
                      "leaked connection owned by %s/%s, worker %s" %
                      (lk["pid"], lk["comm"], s["leak_worker_pid"]))
                check(lk["initiator"] == "remote" and "CLOSE_WAIT" in lk["states"], "leak %s" % lk)
                w = [x for x in recs if x["event"] == "watch" and x["lport"] == sp]
                crossed = [x for x in w if not x["closed"]]
                check(len(crossed) == 1 and crossed[0]["rport"] == s["leak_port"] and
                      crossed[0]["state"] == "CLOSE_WAIT", "watch reports %s" % w)
                check(crossed[0]["pid"] == s["leak_worker_pid"] and
                      crossed[0]["comm"] == s["leak_worker_comm"],
                      "--watch names %s/%s, worker %s" % (crossed[0]["pid"], crossed[0]["comm"],
                                                          s["leak_worker_pid"]))
                # without the accept() hooks --watch asks /proc who holds the socket
                nrecs = tn.wait_for(lambda r: any(x["event"] == "watch" and x["lport"] == sp
                                                  for x in r), 10, "--no-syscalls watch report")
                nw = [x for x in nrecs if x["event"] == "watch" and x["lport"] == sp]
                check(nw[0]["pid"] == s["leak_worker_pid"] and
                      nw[0]["comm"] == s["leak_worker_comm"], "--no-syscalls --watch: %s" % nw[0])
                tn.stop()
                # -p worker 1: its own connection, not its sibling's
                precs = tp.wait_for(lambda r: len(closes(r)) >= 1, 10, "-p worker1's close")
                time.sleep(0.5)
                precs = tp.parsed()
                check([c["rport"] for c in closes(precs)] == [s["reset_port"]],
                      "-p %d: closes %s" % (w1, summarize(closes(precs))))
                check(not [x for x in precs if x["event"] == "watch"],
                      "-p %d --watch reported another process's socket: %s" %
                      (w1, [x for x in precs if x["event"] == "watch"]))
                tp.stop()
                tr.stop()
        finally:
            if p.poll() is None:
                p.kill()
            if os.path.exists(wait_file):
                os.unlink(wait_file)


# test_sockdiag's checks of a bound-only socket: inet_diag lists those only
# when asked with TCPF_BOUND_INACTIVE (Linux 6.8); t_sockdiag_bound_only
SOCKDIAG_BOUND_ONLY = ("bound-only seen (TCPF_BOUND_INACTIVE)", "text: bound verdict",
                       "text: bound line")
_sockdiag_run = None


def sockdiag_results():
    """test_sockdiag's output ({check name: FAIL line or None}, returncode,
    stderr), run once for the two tests that read it."""
    global _sockdiag_run
    if _sockdiag_run is None:
        with Netns("sockdiag") as ns:
            p = run(ns.cmd([Ctx.bin("test_sockdiag")]), check_rc=False, timeout=120)
        res = {}
        for l in p.stdout.splitlines():
            m = re.match(r"(PASS|FAIL) (.*)$", l)
            if m:
                bound = [n for n in SOCKDIAG_BOUND_ONLY if m.group(2).startswith(n)]
                res[bound[0] if bound else m.group(2)] = l if m.group(1) == "FAIL" else None
        check(re.search(r"^\d+ passed, \d+ failed$", p.stdout, re.M) and res,
              "test_sockdiag did not finish: %d %s" % (p.returncode, p.stderr[-500:]))
        _sockdiag_run = (res, p.returncode, p.stderr)
    return _sockdiag_run


def t_sockdiag_holders():
    # sock_diag port queries, /proc owner scans and why-busy output, checked
    # against sockets the program makes itself in a namespace of its own
    # (all but the bound-only checks: t_sockdiag_bound_only)
    res, rc, err = sockdiag_results()
    fails = [l for n, l in res.items() if l and n not in SOCKDIAG_BOUND_ONLY]
    check(not fails and rc in (0, 1), "test_sockdiag: %d %s %s" % (rc, fails[:5], err[-500:]))


@requires("sock_diag dumps of bound-only sockets, TCPF_BOUND_INACTIVE (Linux 6.8)",
          kernel=(6, 8))
def t_sockdiag_bound_only():
    res, rc, err = sockdiag_results()
    missing = [n for n in SOCKDIAG_BOUND_ONLY if n not in res]
    fails = [res[n] for n in SOCKDIAG_BOUND_ONLY if res.get(n)]
    check(not missing and not fails, "test_sockdiag: %s" % (fails or "not run: %s" % missing))


def t_bench_smoke():
    # keeps the benchmark working; numbers are for `make bench`, not for tests
    for exe in ("churn", "floor"):
        if not os.path.exists(Ctx.bin(exe)):
            raise Fail("%s not built (make bench-tools)" % exe) if CI else Skip("%s not built" % exe)
    d = tmpdir("bench")
    out = os.path.join(d, "bench.json")
    try:
        p = run(["python3", os.path.join(ROOT, "scripts/bench"), "--build",
                 os.path.join(ROOT, Ctx.build), "--quick", "--configs",
                 "none,floor,closetrace,closetrace-w", "--json-out", out],
                check_rc=False, timeout=300)
        check(p.returncode == 0, "bench --quick failed: %s %s" % (p.stdout[-1500:], p.stderr[-1500:]))
        data = json.load(open(out))
        check("closetrace" in json.dumps(data), "bench JSON lacks closetrace: %s" % str(data)[:300])
    finally:
        run(["rm", "-rf", d], check_rc=False)


def stress(*args, timeout=600):
    """scripts/stress with these arguments: one JSON result per mode."""
    if not os.path.exists(Ctx.bin("churn")):
        raise Fail("churn not built (make bench-tools)") if CI else Skip("churn not built")
    argv = ["python3", os.path.join(ROOT, "scripts/stress"), "--build",
            os.path.join(ROOT, Ctx.build)] + list(args)
    p = run(argv, check_rc=False, timeout=timeout)
    res = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    check(res, "stress printed nothing: %s" % p.stderr[-500:])
    for r in res:
        check(r.get("ok"), "stress %s: %s" % (r.get("mode"), "; ".join(r.get("problems", []))))
    check(p.returncode == 0, "stress exit %d" % p.returncode)
    return res


def t_stress_accounting():
    # Parallel client-first and server-first churn in a namespace of its own,
    # every connection logged by the load generators; its namespace deleted
    # with all its TIME_WAITs alive.  Every record joined to that log: one
    # close per side, one timewait per TIME_WAIT, nothing extra, nothing lost.
    n = "4000" if VMTEST else "20000"
    res = stress("--connections", n, "--mode", "json", "--mode", "record",
                 timeout=1200 if VMTEST else 300)
    check(all(r["connections"] >= int(n) for r in res), "connections %s" % res)


def t_stress_tables_full():
    # tables too small for the load: each close whose TIME_WAIT could not be
    # followed says so, each connection not tracked is counted, once
    res = stress("--connections", "3000", "--parallel", "2", "--tables-may-fill", "--",
                 "--max-timewait", "1024", timeout=1200 if VMTEST else 300)
    r = res[0]
    check(r["timewait_untracked"] > 0 and r["stats"]["tw_map_full"] == r["timewait_untracked"],
          "untracked TIME_WAITs %s, tw_map_full %s" % (r["timewait_untracked"], r["stats"]))


def t_tw_reuse_check():
    # tcp_tw_reuse 0/1/2 and two delays, loopback and not: every reuse judged
    argv = [os.path.join(ROOT, "scripts/tw-reuse-check"), "--quick",
            "--closetrace", Ctx.bin("closetrace"), "--ctscen", Ctx.bin("ctscen")]
    # under TCG a row's closetrace may take tens of seconds to start
    p = run(argv, check_rc=False, timeout=600 if VMTEST else 180)
    # its table and findings, without the rows' closetrace warnings (5.10 has three each)
    out = "\n".join(l for l in p.stdout.splitlines() if not l.startswith("closetrace stderr"))
    check(p.returncode == 0, "tw-reuse-check failed (%d):\n%s\n%s" % (p.returncode, out[-3000:],
                                                                   p.stderr[-1000:]))
    check("PASS" in p.stdout and "FAIL" not in p.stdout, "table:\n%s" % p.stdout)

# Sockets older than the tracer: N client TIME_WAITs (client closes first),
# K CLOSE_WAITs (the server holds them; their clients sit in orphaned
# FIN_WAIT2 timewait sockets) that the server closes on the first line on
# stdin, and M more orphaned FIN_WAIT2s left to time out (tcp_fin_timeout),
# all made before closetrace starts.  The ground truth line has the ports;
# the script exits on the second line.
PREEXIST = r"""
import json, os, socket, sys, time
n, k, m = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(n + k + m + 8)
port = ls.getsockname()[1]
ports = {"tw_ports": [], "cw_ports": [], "fw_ports": []}
cw, fw = [], []
for i in range(n + k + m):
    c = socket.create_connection(("127.0.0.1", port)); a, _ = ls.accept()
    cp = c.getsockname()[1]
    c.close()
    if i < n:
        time.sleep(0.002); a.close(); ports["tw_ports"].append(cp)
    elif i < n + k:
        cw.append(a); ports["cw_ports"].append(cp)
    else:
        fw.append(a); ports["fw_ports"].append(cp)
ls.close()
ports.update({"pid": os.getpid(), "server_port": port})
print(json.dumps(ports), flush=True)
sys.stdin.readline()
for a in cw:
    a.close()
print(json.dumps({"closed_ns": time.monotonic_ns()}), flush=True)
sys.stdin.readline()
"""


def ss_count(ns, state):
    out = ns.exec_(["ss", "-tanH", "state", state]).stdout
    return len([l for l in out.splitlines() if l.strip()])


def t_preexisting_sockets():
    n, k, m = 60, 4, 3
    fin_timeout = 15 if VMTEST else 6  # outlasts closetrace's start-up
    # 58 of 60 TIME_WAITs were left once in a slow guest: no connect() may
    # take one over (tcp_tw_reuse's default 2 allows it on loopback after a
    # second), and an RST does not kill one (tcp_rfc1337; a FIN retransmitted
    # to a peer already gone draws one)
    with Netns("preexist", {"net.ipv4.tcp_fin_timeout": fin_timeout,
                            "net.ipv4.tcp_tw_reuse": "0", "net.ipv4.tcp_rfc1337": "1"}) as ns:
        p = subprocess.Popen(ns.cmd(["python3", "-c", PREEXIST, str(n), str(k), str(m)]),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            truth = json.loads(p.stdout.readline())
            check(len(truth["tw_ports"]) == n, "scenario: %s" % truth)
            # the sockets exist before closetrace starts (loopback may lag under emulation)
            want = {"time-wait": n, "fin-wait-2": k + m, "close-wait": k + m}
            deadline = time.time() + 20
            while True:
                got = {st: ss_count(ns, st) for st in want}
                if got == want or time.time() > deadline:
                    break
                time.sleep(0.05)
            check(got == want, "the scenario's sockets are not all there: %s" % got)
            with traced(ns) as tr:
                check(ss_count(ns, "fin-wait-2") == k + m,
                      "orphaned FIN_WAIT2s timed out before closetrace started")
                p.stdin.write("go\n")
                p.stdin.flush()
                json.loads(p.stdout.readline())
                recs = tr.wait_for(lambda r: len(closes(r)) >= k, 10, "the CLOSE_WAIT closes")
                # the M orphans time out
                recs = tr.wait_for(lambda r: len(tws(r, end="fin-wait2-timeout")) >= m,
                                   fin_timeout + 10, "%d FIN_WAIT2 timeouts" % m)
                p.stdin.write("exit\n")
                p.stdin.flush()
                p.wait(timeout=10)
                # every other timewait socket ends with its namespace
                run(["ip", "netns", "del", ns.name])
                recs = tr.wait_for(lambda r: len(tws(r)) >= n + k + m, 30,
                                   "%d timewait records" % (n + k + m))
                time.sleep(0.3)  # let a duplicate arrive, if there were one
                tr.stop()
                recs = tr.parsed()
                stats = [r for r in recs if r["event"] == "stats"]
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    ours = truth["tw_ports"] + truth["cw_ports"] + truth["fw_ports"]
    for port in ours:
        t = one(tws(recs, lport=port), "timewait record of client port %d" % port)
        check(t["preexisting"] is True, "not marked preexisting: %s" % t)
    for port in truth["tw_ports"] + truth["cw_ports"]:
        t = one(tws(recs, lport=port), "timewait record")
        check(t["end"] == "netns-exit", "end %s, expected netns-exit" % t["end"])
    for port in truth["tw_ports"]:
        t = one(tws(recs, lport=port), "timewait record")
        check(t["age_estimate"] is True, "TIME_WAIT age not estimated: %s" % t)
        check(0 < t["duration_ns"] < 60e9, "duration %s" % t["duration_ns"])
    for port in truth["cw_ports"]:
        c = one(closes(recs, rport=port), "close of the CLOSE_WAIT of port %d" % port)
        check(c["preexisting"] is True and c["initiator"] == "remote",
              "CLOSE_WAIT close: %s" % c)
        check(c["pid"] == truth["pid"], "owner %s != %s" % (c["pid"], truth["pid"]))
        # the orphaned FIN_WAIT2 got its FIN: TIME_WAIT from then on
        t = one(tws(recs, lport=port), "timewait record")
        check("FIN_WAIT2" in t["states"] and t["initiator"] == "local",
              "orphan's FIN_WAIT2 missing: %s" % t)
    for port in truth["fw_ports"]:
        t = one(tws(recs, lport=port), "timewait record")
        check(t["end"] == "fin-wait2-timeout" and t["age_estimate"] is False,
              "orphan that timed out: %s" % t)
    check(not [r for r in tws(recs) if r["lport"] not in ours],
          "timewait records of unknown sockets")
    s = one(stats, "stats record")
    check(s.get("preexisting", 0) == n + 2 * (k + m) and s.get("preexisting_untracked") == 0,
          "stats: %s" % s)


INTEGRATION = [
    t_timewait_expiry,  # first: it takes a minute and runs alongside the rest
    t_client_closes_first, t_server_closes_first, t_simultaneous_close,
    t_linger0_reset, t_unread_data_reset, t_close_wait_duration, t_ipv6,
    t_family_filter, t_port_filter, t_timewait_reused, t_timewait_reset,
    t_timewait_not_created, t_timewait_netns_exit, t_timewait_syn_kill,
    t_preexisting_sockets,
    t_timewait_fin_wait2_timeout, t_retransmission_timeout, t_tfo_syn_recv_deaths,
    t_keepalive_timeout, t_listener_closed_child_reset, t_abort_on_data,
    t_pid_filter, t_pid_preexisting_connection, t_pid_exit_stops,
    t_states_mode,
    t_stats_at_exit, t_errors, t_smoke_sigterm, t_kernel_features, t_classic_tracepoints, t_old_kernel,
    t_conn_id_is_socket_cookie,
    t_socket_slot_collisions,
    t_record_replay_identical, t_recorder_sigkill, t_truncated_and_corrupt_files,
    t_summary_matches_records, t_summary_live_only, t_full_disk, t_rotation,
    t_write_stdout_pipe, t_fuzz_reader_smoke, t_fuzz_regressions, t_tw_reuse_check,
    t_methods_basic, t_method_shutdown, t_method_exit_and_kill, t_method_linger_wait,
    t_close_deferred_inherited, t_bind_conflict_timewait, t_bind_conflict_held_port,
    t_why_busy_errors, t_watch_close_wait, t_watch_orphan_fin_wait2, t_watch_netns_filter,
    t_watch_existing,
    t_prefork_worker_owner,
    t_sockdiag_holders,
    t_sockdiag_bound_only, t_bench_smoke, t_stress_accounting, t_stress_tables_full,
]
PARALLEL = {t_timewait_expiry}


class Results:
    def __init__(self):
        self.passed = self.failed = self.skipped = self.unsupported = 0
        self.tests = []  # for --json-out
        self.lock = threading.Lock()

    def record(self, name, status, detail=""):
        """status: passed, failed, skipped or unsupported (a SKIP line too)."""
        with self.lock:
            setattr(self, status, getattr(self, status) + 1)
            word = "SKIP" if status == "unsupported" else status.upper()[:4]
            print("%s %s%s" % (word, name, (": " + detail) if detail else ""), flush=True)
            t = {"name": name, "status": "skipped" if status == "unsupported" else status}
            if status == "unsupported":
                t["unsupported"] = True
            if detail:
                t["detail"] = detail
            self.tests.append(t)


def run_test(fn, res):
    name = fn.__name__[2:]
    why = unsupported(fn)
    if why:
        res.record(name, "unsupported", "not supported on this kernel (%s)" % why)
        return
    t0 = time.time()
    try:
        fn()
    except Skip as e:
        res.record(name, "skipped", str(e))
        return
    except Fail as e:
        res.record(name, "failed", str(e))
        return
    except Exception as e:  # a broken test is a failed test
        res.record(name, "failed", "%s\n%s" % (e, traceback.format_exc()))
        return
    res.record(name, "passed", "%.1fs" % (time.time() - t0))


def run_units(res):
    p = run([Ctx.bin("test_units")], check_rc=False, timeout=60)
    for line in p.stdout.splitlines():
        m = re.match(r"(PASS|FAIL) (\S+?)(?::\s*(.*))?$", line)
        if m:
            res.record("unit/" + m.group(2), "passed" if m.group(1) == "PASS" else "failed",
                       m.group(3) or "")
    if p.returncode not in (0, 1):
        res.record("unit", "failed", "test_units crashed (%d): %s" % (p.returncode, p.stderr))


def can_trace():
    if os.geteuid() != 0:
        return "not root"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "no kernel BTF"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("-k", default=None, help="run only tests whose name contains this")
    ap.add_argument("--unit-only", action="store_true")
    ap.add_argument("--json-out", help="every test's name, status and detail as JSON")
    a = ap.parse_args()
    Ctx.build = a.build
    res = Results()
    run_units(res)
    if not a.unit_only:
        why = can_trace()
        tests = [t for t in INTEGRATION if not a.k or a.k in t.__name__]
        if why:
            for t in tests:
                res.record(t.__name__[2:], "failed" if CI else "skipped",
                           "cannot trace here: " + why)
        else:
            threads = []
            for t in tests:
                if t in PARALLEL:
                    th = threading.Thread(target=run_test, args=(t, res))
                    th.start()
                    threads.append(th)
                else:
                    run_test(t, res)
            for th in threads:
                th.join()
    line = "%d passed, %d failed" % (res.passed, res.failed)
    if res.skipped:
        line += ", %d skipped" % res.skipped
    if res.unsupported:
        line += ", %d unsupported" % res.unsupported
    print(line)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"kernel": os.uname().release, "passed": res.passed, "failed": res.failed,
                       "skipped": res.skipped, "unsupported": res.unsupported,
                       "tests": res.tests}, f, indent=1)
            f.write("\n")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
