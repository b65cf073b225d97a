"""A hostile guest agent behind -chardev qga.

The tiny guest boots without qemu-ga (qga.noagent): init execs a shell on
the console, and the tests type busybox sh scripts into it that play a
hostile agent on the real virtio-serial port: floods, malformed, oversized,
deeply nested, non-finite and slow replies, wrong ids, port flapping.
During each attack QEMU must
  - answer every request with its documented error (or, for a valid reply,
    with the reply) within the request's timeout plus SLACK seconds,
  - keep serving another monitor: query-status back to back there, its p99
    below P99_MAX and its max below MAX_MAX seconds (failure bounds, not
    expectations; both are printed),
  - keep its memory bounded (VmRSS / VmHWM from /proc, printed),
  - send GUEST_AGENT_CHANGE at most about once a second (throttled),
and afterwards the real qemu-ga, started by hand in the guest, works
through QMP again without restarting QEMU (guest-ping, guest-info).

Each test boots one VM and runs several scenarios on it; the recovery
between them is part of each scenario's check.
"""

import os
import re
import threading
import time

from harness import (REPLY_TIMEOUT, Guest, LatencyProbe, QMPSocket,
                     concurrent_commands, tree_version, wait_for)

PORT = "/dev/virtio-ports/org.qemu.guest_agent.0"

# Bounds (failure bounds, generous for TCG on a busy two-core machine)
SLACK = 2.0         # s: a request's error arrives within its timeout + this
P99_MAX = 0.5       # s: p99 of query-status on another monitor
MAX_MAX = 3.0       # s: the longest query-status round trip (no stalls)
EVENTS_PER_S = 1.0  # GUEST_AGENT_CHANGE is throttled to 1/s per chardev
RSS_SLACK = 128 << 20   # bytes QEMU may grow beyond what a reply takes
FLAP_SECS = 4.0     # s: how long to flap the port

# The hostile agent's library, sourced by every scenario's script.
# serve HANDLER: open the port, answer each guest-sync-delimited (0xFF,
# then {"return": ID}) and run HANDLER for every other request, with $id
# (the request's id), $cmd, $line and $N (requests so far) set.  A
# handler may start one writer in the background (BG=$!); the next sync
# stops it, so that floods last while a request is in flight.  After
# each sync, serve calls on_sync (a script may redefine it), with $SYNCS
# (syncs so far) set.
LIB = r"""
PORT=/dev/virtio-ports/org.qemu.guest_agent.0
BG=
bg_stop() {
    [ -n "$BG" ] && kill $BG 2>/dev/null
    BG=
}
# reply TEXT: one line to QEMU
reply() { printf '%s\n' "$1" >&3; }
# answer TEXT [ID]: reply TEXT with each @ID replaced by ID (default: $id)
answer() {
    t=$1; r=
    while case $t in *@ID*) ;; *) false ;; esac; do
        r=$r${t%%@ID*}${2:-$id}; t=${t#*@ID}
    done
    reply "$r$t"
}
# pad N: N bytes of 'a'
pad() { head -c "$1" /dev/zero | tr '\000' a; }
# answer_sync: the reply to the guest-sync-delimited in $line
answer_sync() {
    sid=${line##*\"id\":}; sid=${sid# }; sid=${sid%%[!0-9]*}
    printf '\377{"return": %s}\n' "$sid" >&3
}
on_sync() { :; }
serve() {
    exec 3<>$PORT
    N=0
    SYNCS=0
    while read -r line <&3; do
        case $line in
        *guest-sync-delimited*)
            bg_stop
            answer_sync
            SYNCS=$((SYNCS+1))
            on_sync ;;
        *\"execute\"*)
            id=${line##*\"id\":}; id=${id# }; id=${id%%[!0-9]*}
            cmd=${line#*\"execute\":}; cmd=${cmd#*\"}; cmd=${cmd%%\"*}
            N=$((N+1))
            echo "request $N $cmd $id"
            "$1" ;;
        esac
    done
}
"""

# The documented errors (GenericError unless said otherwise)


def timed_out(cmd, ms, sent):
    return re.escape("Guest agent command '%s' timed out after %d ms; %s"
                     % (cmd, ms, "the guest agent may have executed it"
                        if sent else "it was not sent to the guest agent"))


def invalid(cmd, reason=".+"):
    return re.escape("Guest agent reply to '%s' was invalid: " % cmd) + reason


def port_closed(cmd, sent):
    return re.escape("Guest agent command '%s' failed: the guest closed the "
                     "guest agent's port; %s"
                     % (cmd, "the guest agent may have executed it"
                        if sent else "it was not sent to the guest agent"))


def not_opened():
    return re.escape("The guest has not opened the guest agent's port")


def exceeds(size):
    return re.escape("reply exceeds max-reply-size (%d bytes)" % size)


NESTED = re.escape("reply is nested more than 64 levels deep")
NESTING_LIMIT = re.escape("JSON nesting depth limit exceeded")
NOT_FINITE = re.escape("reply contains a number that is not finite")
NOT_OBJECT = re.escape("reply is not a JSON object")


def mib(kib):
    return kib / 1024.0


class Hostile:
    """One VM whose guest plays a hostile agent, scenario after scenario.

    monitors[0] is the latency probe's, monitors[1:4] send the requests,
    the main monitor (QEMUMachine's) checks the channel's state."""

    def __init__(self, qga_opts="", max_reply_size=8 << 20, trace=()):
        self.g = Guest("current", agent="qga", append="qga.noagent",
                       console_socket=True, monitors=4, qga_opts=qga_opts)
        self.max_reply_size = max_reply_size
        self.results = []
        # QEMU's trace events @trace, logged to a file in the guest's dir
        self.trace_log = os.path.join(self.g.dir, "trace.log")
        for event in trace:
            self.g.vm.add_args("-trace", event)
        if trace:
            self.g.vm.add_args("-D", self.trace_log)

    def trace(self):
        """The trace events logged so far, one line each."""
        with open(self.trace_log, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()

    def __enter__(self):
        self.g.start()
        try:
            self.g.wait_console("job control turned off")
            self.g.upload("/tmp/hostile.sh", LIB)
            self.idle = self.g.qemu_memory()
            self.pid = self.g.vm.get_pid()
        except BaseException:
            self.g.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.g.stop()

    def state(self):
        return self.g.vm.cmd("query-guest-agent")

    # requests

    def request(self, name, args=None, timeout_ms=3000, mon=1):
        """@name with "timeout-ms": @timeout_ms on extra monitor @mon; returns
        (seconds to the reply, reply).  The reply is parsed strictly (valid
        UTF-8, no Infinity/NaN) and must arrive within the timeout + SLACK."""
        args = dict(args or {}, **{"timeout-ms": timeout_ms})
        qmp = QMPSocket(self.g.monitors[mon])
        try:
            t0 = time.monotonic()
            try:
                rsp = qmp.execute(name, args,
                                  timeout=timeout_ms / 1000.0 + SLACK)
            except TimeoutError as e:
                raise AssertionError("%s with a timeout of %d ms: no reply "
                                     "within %.1f s" % (name, timeout_ms,
                                                        time.monotonic() - t0)
                                     ) from e
            secs = time.monotonic() - t0
        finally:
            qmp.close()
        print("    %-22s %5.2f s  %s" % (name, secs, short(rsp)))
        return secs, rsp

    def concurrent(self, name, timeout_ms=3000, show=True):
        """@name on monitors 1-3 at the same moment; [(secs, reply)]."""
        results = concurrent_commands(self.g.monitors[1:4], name,
                                      {"timeout-ms": timeout_ms},
                                      timeout=timeout_ms / 1000.0 + SLACK)
        if show:
            print_outcomes(name, results)
        for secs, _ in results:
            check_in_time(secs, timeout_ms)
        return results

    # a scenario

    def attack(self, name, script, body, wait="connected"):
        """Run the hostile @script (sh, with LIB sourced) in the guest and
        @body(self) against it, then check QEMU's health and recover with
        the real qemu-ga.  @wait: what the script reaches before @body
        runs: "connected" (it opened the port), "synced" (QEMU is in sync
        with it) or None."""
        g = self.g
        print("  scenario %s" % name)
        t_start = time.monotonic()
        path = "/tmp/%s.sh" % name
        g.upload(path, ". /tmp/hostile.sh\n" + script)
        before = self.state()
        probe = LatencyProbe(g.monitors[0], timeout=REPLY_TIMEOUT)
        probe.start()
        t0 = time.monotonic()
        try:
            pid = g.spawn(path, "/tmp/%s.log" % name)
            if wait == "connected":
                wait_for(lambda: self.state()["guest-connected"], 30,
                         "the hostile agent never opened the port")
            elif wait == "synced":
                wait_for(lambda: self.state()["synced"], 30,
                         "QEMU never got in sync with the hostile agent")
            body(self)
            t1 = time.monotonic()
            mem = g.qemu_memory()
            after = self.state()
        finally:
            summary = probe.stop()
        window = t1 - t0
        changes = [ev for ev in summary["events"]
                   if ev["event"] == "GUEST_AGENT_CHANGE"]
        print("    query-status on another monitor: n=%d p99=%.3f s "
              "max=%.3f s" % (summary["n"], summary["p99"], summary["max"]))
        print("    GUEST_AGENT_CHANGE: %d in %.1f s; VmRSS %.0f MiB, VmHWM "
              "%.0f MiB (idle %.0f MiB); stale-replies +%d, "
              "invalid-replies +%d, timeouts +%d"
              % (len(changes), window, mib(mem["VmRSS"]), mib(mem["VmHWM"]),
                 mib(self.idle["VmRSS"]),
                 after["stale-replies"] - before["stale-replies"],
                 after["invalid-replies"] - before["invalid-replies"],
                 after["timeouts"] - before["timeouts"]))
        assert g.vm.is_running() and g.vm.get_pid() == self.pid
        assert summary["p99"] < P99_MAX, \
            "%s: query-status p99 %.3f s" % (name, summary["p99"])
        assert summary["max"] < MAX_MAX, \
            "%s: query-status max %.3f s" % (name, summary["max"])
        assert len(changes) <= window * EVENTS_PER_S + 2, \
            "%s: %d GUEST_AGENT_CHANGE in %.1f s" % (name, len(changes),
                                                     window)
        limit = (self.idle["VmRSS"]
                 + (4 * self.max_reply_size + RSS_SLACK) // 1024)
        assert mem["VmRSS"] < limit and mem["VmHWM"] < limit, \
            "%s: QEMU's memory %s, idle %s" % (name, mem, self.idle)
        g.kill(pid, group=True)
        wait_for(lambda: not self.state()["guest-connected"], 30,
                 "the port did not close when the hostile agent was killed")
        secs = self.recover()
        print("    recovered with the real qemu-ga in %.1f s; scenario "
              "%.1f s" % (secs, time.monotonic() - t_start))
        self.results.append((name, summary, time.monotonic() - t_start))
        return after["stale-replies"] - before["stale-replies"]

    def recover(self):
        """Start the real qemu-ga in the guest, check that guest-ping and
        guest-info work through QMP, and stop it again."""
        g = self.g
        t0 = time.monotonic()
        g.clear_events()
        _, pid = g.shell_run("/usr/sbin/qemu-ga -m virtio-serial -p %s -f "
                             "/run/qemu-ga.pid -t /run >/tmp/qemu-ga.log "
                             "2>&1 &" % PORT)
        assert pid, "qemu-ga did not start"
        g.wait_agent_change(True, timeout=60)
        wait_for(lambda: self.state()["synced"], 60,
                 "QEMU never got in sync with the real qemu-ga")
        assert g.vm.cmd("guest-ping", timeout_ms=10000) == {}
        info = g.vm.cmd("guest-info", timeout_ms=10000)
        assert info["version"] == tree_version(), info["version"]
        state = self.state()
        assert state["version"] == tree_version(), state
        secs = time.monotonic() - t0
        g.kill(pid)
        state = wait_for(lambda: (lambda s: s if not s["guest-connected"]
                                  else None)(self.state()), 30,
                         "the port did not close when qemu-ga was killed")
        # what guest-info told is forgotten when the port closes
        assert "version" not in state and "enabled-commands" not in state, \
            state
        return secs


def short(rsp, limit=200):
    text = str(rsp)
    return text if len(text) <= limit else text[:limit] + "...(%d)" % len(text)


def print_outcomes(name, results):
    """One line per distinct outcome of @results [(secs, reply)]."""
    outcomes = {}
    for secs, rsp in results:
        key = rsp["error"]["desc"] if "error" in rsp else short(rsp["return"])
        outcomes.setdefault(key, []).append(secs)
    for key, times in outcomes.items():
        print("    %-22s %3dx %5.2f-%5.2f s  %s"
              % (name, len(times), min(times), max(times), key))


def check_in_time(secs, timeout_ms):
    assert secs <= timeout_ms / 1000.0 + SLACK, \
        "the reply took %.2f s, the timeout was %d ms" % (secs, timeout_ms)


def check_error(result, timeout_ms, *patterns, cls="GenericError"):
    """@result (secs, reply) is an error of class @cls whose desc fully
    matches one of @patterns, and arrived in time; returns the desc."""
    secs, rsp = result
    check_in_time(secs, timeout_ms)
    assert "error" in rsp, "expected an error, got %s" % short(rsp)
    desc = rsp["error"]["desc"]
    assert any(re.fullmatch(p, desc, re.S) for p in patterns), \
        "unexpected error %r (expected one of %s)" % (desc, patterns)
    assert rsp["error"]["class"] == cls, rsp
    return desc


def check_return(result, timeout_ms, expected=None):
    secs, rsp = result
    check_in_time(secs, timeout_ms)
    assert "return" in rsp, "expected success, got %s" % short(rsp)
    if expected is not None:
        assert rsp["return"] == expected, short(rsp)
    return rsp["return"]


def print_summary(h):
    total = sum(secs for _, _, secs in h.results)
    print("  %d scenarios in %.1f s" % (len(h.results), total))


# --------------------------------------------------------------- the tests


def test_hostile_urandom_flood():
    """cat /dev/urandom > the port: never in sync; requests on three
    monitors time out in time, unsent; other monitors are served.  QEMU
    pushes back: once it has taken its share of guest output for a main
    loop iteration, virtio-serial throttles the port, and QEMU releases
    it again on a later iteration."""
    with Hostile(trace=["virtio_serial_throttle_port"]) as h:
        def body(h):
            for _ in range(2):
                for r in h.concurrent("guest-ping", 3000):
                    check_error(r, 3000, timed_out("guest-ping", 3000, False))
            assert not h.state()["synced"]

        h.attack("urandom", "exec cat /dev/urandom > $PORT\n", body)
        lines = h.trace()
        on = sum("throttle 1" in line for line in lines)
        off = sum("throttle 0" in line for line in lines)
        print("    virtio-serial throttled the port %d times, released it "
              "%d times" % (on, off))
        # how often depends on how fast the guest writes; that it
        # happens, and that every throttle but the last is released, not
        assert on > 0 and off >= on - 1, lines[-20:]


STALE_FLOOD = r"""
h() { yes '{"return": {}, "id": 999999999}' >&3 & BG=$!; }
serve h
"""

FLAP = r"""
while :; do exec 3<>$PORT; exec 3>&-; done
"""

FLAP_SYNC = r"""
while :; do
    exec 3<>$PORT
    read -r line <&3
    case $line in *guest-sync-delimited*) answer_sync ;; esac
    exec 3>&-
done
"""

CLOSE_MID_REQUEST = r"""
h() {
    while [ ! -e /tmp/close-now ]; do usleep 10000; done
    exit 0
}
serve h
"""


def test_hostile_floods():
    """Only 0xFF; stale replies while a request is in flight; the port
    opened and closed in a loop, with and without answering the sync;
    the port closed with a request in flight and two queued."""
    with Hostile() as h:
        def ff(h):
            for r in h.concurrent("guest-ping", 3000):
                check_error(r, 3000, timed_out("guest-ping", 3000, False))

        h.attack("ff-flood", "exec tr '\\000' '\\377' </dev/zero > $PORT\n",
                 ff)

        def stale(h):
            for _ in range(2):
                check_error(h.request("guest-ping", timeout_ms=3000), 3000,
                            timed_out("guest-ping", 3000, True))
                wait_for(lambda: h.state()["synced"], 30,
                         "QEMU did not resync after the timeout")

        stale_count = h.attack("stale-flood", STALE_FLOOD, stale,
                               wait="synced")
        assert stale_count >= 2, stale_count

        flap_errors = (not_opened(), port_closed("guest-ping", False),
                       timed_out("guest-ping", 2000, False))

        def pings_while_flapping(h, *errors):
            # for a while, to see the events' throttling
            end = time.monotonic() + FLAP_SECS
            results = []
            while time.monotonic() < end:
                results += h.concurrent("guest-ping", 2000, show=False)
            print_outcomes("guest-ping", results)
            for r in results:
                check_error(r, 2000, *errors)

        def flap(h):
            pings_while_flapping(h, *flap_errors)

        h.attack("flap", FLAP, flap, wait=None)

        def flap_sync(h):
            pings_while_flapping(h, *flap_errors,
                                 port_closed("guest-ping", True),
                                 timed_out("guest-ping", 2000, True))

        h.attack("flap-sync", FLAP_SYNC, flap_sync, wait=None)

        def close_mid_request(h):
            # the agent holds the first request until the other two are
            # queued behind it, then closes the port: the first was sent,
            # the two queued ones were not
            results = []
            t = threading.Thread(target=lambda: results.extend(
                h.concurrent("guest-ping", 10000, show=False)), daemon=True)
            t.start()
            wait_for(lambda: (lambda s: s["in-flight"] and s["queued"] == 2)(
                h.state()), 10, "the requests were never queued")
            h.g.shell_run("touch /tmp/close-now")
            t.join(10 + SLACK + 5)
            assert len(results) == 3, results
            print_outcomes("guest-ping", results)
            descs = [check_error(r, 10000, port_closed("guest-ping", True),
                                 port_closed("guest-ping", False))
                     for r in results]
            sent = [d for d in descs
                    if re.fullmatch(port_closed("guest-ping", True), d)]
            assert len(sent) == 1, descs

        h.attack("close-mid-request", CLOSE_MID_REQUEST, close_mid_request,
                 wait="synced")
        print_summary(h)


ECHO = r"""
h() { reply "$line"; }
serve h
"""

# right after each reply, junk; a request is answered only when a sync
# came after the junk
UNSOLICITED = r"""
JUNK=0
on_sync() { JUNK=0; }
h() {
    if [ $JUNK = 0 ]; then
        answer '{"return": {}, "id": @ID}'
    else
        answer '{"error": {"class": "GenericError", "desc": "no resync"}, "id": @ID}'
    fi
    reply '{"return": {}, "id": 424242}'
    reply '[[[[[[[[[[ {"return": 1e999} garbage'
    pad 70000 >&3
    JUNK=1
}
serve h
"""

IDS = r"""
h() {
    case $N in
    1) # a stale reply and the right one in one write, the right one
       # longer than the pieces QEMU parses at a time (4 KiB)
       reply "$(printf '{"return": {}, "id": %s}\n{"return": {},%s"id": %s}' \
                $((id+1000)) "$(pad 5000 | tr a ' ')" $id)" ;;
    2) answer '{"return": {}, "id": @ID}' $((id+1))
       answer '{"return": {}, "id": -@ID}'
       reply '{"return": {}, "id": 0}' ;;
    *) reply '{"return": {}}' ;;
    esac
}
serve h
"""

DRIP = r"""
drip() {
    s=$1; i=0
    while [ $i -lt ${#s} ]; do
        printf '%s' "${s:$i:1}" >&3; usleep 50000; i=$((i+1))
    done
    printf '\n' >&3
}
# the previous drip's last byte must not land in the middle of the next
h() {
    [ -n "$BG" ] && wait $BG
    drip "{\"return\": {}, \"id\": $id}" & BG=$!
}
serve h
"""

# printf's own escapes: \000 NUL, \300\200 C0 80 (modified UTF-8 NUL),
# \355\240\200 (an encoded surrogate), \351 (a lone lead byte), \377
BYTES = r"""
h() {
    case $N in
    1) printf '{"return": {}, "id": %s, "x": "a\000b"}\n' $id >&3 ;;
    2) printf '{"error": {"class": "GenericError", "desc": "bad \300\200 \355\240\200 \351 x"}, "id": %s}\n' $id >&3 ;;
    3) printf '{"return": {}, "id": %s, "x": "a\377b"}\n' $id >&3 ;;
    4) printf '{"return": {"s": "a\\u0000b\300\200c"}, "id": %s}\n' $id >&3 ;;
    5) { printf '{"error": {"class": "GenericError", "desc": "\\u0001\\u0007\\n'
         pad 100000; printf '"}, "id": %s}\n' $id; } >&3 ;;
    6) answer '{"error": {"class": "DeviceNotActive", "desc": "not active"}, "id": @ID}' ;;
    7) answer '{"error": {"class": "CommandNotFound", "desc": "no such command"}, "id": @ID}' ;;
    esac
}
serve h
"""

SHAPES = r"""
h() {
    case $N in
    1) reply '[1, 2]' ;;
    2) reply '42' ;;
    3) reply '"return"' ;;
    4) answer '{"return": {}, "error": {"class": "GenericError", "desc": "x"}, "id": @ID}' ;;
    5) answer '{"return": "x", "id": @ID}' ;;
    6) answer '{"return": {"version": 7, "supported_commands": []}, "id": @ID}' ;;
    esac
}
serve h
"""

NESTING = r"""
h() {
    case $N in
    1) tr '\000' '[' </dev/zero >&3 & BG=$! ;;
    *) answer '{"return": {}, "id": @ID, "x": DEEP}' ;;
    esac
}
serve h
""".replace("DEEP", "[" * 100 + "]" * 100)


def test_hostile_malformed_replies():
    """Echoed requests, unsolicited output, wrong and missing ids, a slow
    drip, NUL, invalid UTF-8 and 0xFF in replies, agent errors, wrong
    shapes, nesting."""
    with Hostile() as h:
        def echo(h):
            for cmd in ("guest-ping", "guest-info"):
                check_error(h.request(cmd), 3000, invalid(
                    cmd, re.escape("reply has neither 'return' nor 'error'")))

        h.attack("echo", ECHO, echo, wait="synced")

        def unsolicited(h):
            # output while no request is in flight (right after a reply):
            # counted as stale, discarded unparsed (so not an invalid
            # reply), and QEMU resyncs before the next request
            state = h.state()
            check_return(h.request("guest-ping"), 3000, {})
            wait_for(lambda: (h.state()["stale-replies"]
                              > state["stale-replies"]),
                     30, "QEMU did not count the unsolicited output")
            assert h.state()["invalid-replies"] == state["invalid-replies"]
            check_return(h.request("guest-ping"), 3000, {})

        h.attack("unsolicited", UNSOLICITED, unsolicited, wait="synced")

        def ids(h):
            # replies with other ids are stale: dropped, the right one
            # counts, also when it comes in the same buffer
            check_return(h.request("guest-ping"), 3000, {})
            # only wrong ids: the request waits and times out
            check_error(h.request("guest-ping", timeout_ms=2000), 2000,
                        timed_out("guest-ping", 2000, True))
            wait_for(lambda: h.state()["synced"], 30, "no resync")
            check_error(h.request("guest-ping"), 3000, invalid(
                "guest-ping", re.escape("reply has no 'id'")))

        stale_count = h.attack("ids", IDS, ids, wait="synced")
        assert stale_count >= 4, stale_count

        def drip(h):
            secs, _ = r = h.request("guest-ping", timeout_ms=20000)
            check_return(r, 20000, {})
            assert secs > 0.5, "the drip was too fast to test anything"
            check_error(h.request("guest-ping", timeout_ms=1000), 1000,
                        timed_out("guest-ping", 1000, True))

        h.attack("drip", DRIP, drip, wait="synced")

        def bytes_(h):
            # a raw NUL in a string
            check_error(h.request("guest-ping"), 3000, invalid("guest-ping"))
            # invalid UTF-8 in an error's desc: refused, or passed on as
            # valid UTF-8 (h.request() decodes strictly)
            check_error(h.request("guest-ping"), 3000, invalid("guest-ping"),
                        re.escape("Guest agent: ") + ".*")
            # 0xFF inside a reply
            check_error(h.request("guest-ping", timeout_ms=2000), 2000,
                        invalid("guest-ping"),
                        timed_out("guest-ping", 2000, True))
            wait_for(lambda: h.state()["synced"], 30, "no resync")
            # NUL as \u0000 and as modified UTF-8 (C0 80) in a string that
            # is forwarded: QMP carries it as \u0000 (strictly valid JSON),
            # or the reply is refused
            r = h.request("guest-agent-command", {"execute": "guest-ping"})
            if "error" in r[1]:
                check_error(r, 3000, invalid("guest-ping"),
                            invalid("guest-agent-command"))
            else:
                assert check_return(r, 3000) == \
                    {"result": {"s": "a\0b\0c"}}, r
            # a long description with control characters: bounded, clean
            desc = check_error(h.request("guest-ping"), 3000,
                               re.escape("Guest agent: ") + ".*")
            assert len(desc.encode()) <= 1024, len(desc.encode())
            assert not any(ord(c) < 0x20 for c in desc), repr(desc)
            # the agent's classes: only CommandNotFound is kept
            check_error(h.request("guest-ping"), 3000,
                        re.escape("Guest agent: not active"))
            check_error(h.request("guest-ping"), 3000,
                        re.escape("Guest agent: no such command"),
                        cls="CommandNotFound")

        h.attack("bytes", BYTES, bytes_, wait="synced")

        def shapes(h):
            for _ in range(3):
                check_error(h.request("guest-ping"), 3000,
                            invalid("guest-ping", NOT_OBJECT))
            check_error(h.request("guest-ping"), 3000, invalid(
                "guest-ping",
                re.escape("reply has both 'return' and 'error'")))
            for _ in range(2):
                check_error(h.request("guest-info"), 3000,
                            invalid("guest-info"))
            assert "version" not in h.state()

        h.attack("shapes", SHAPES, shapes, wait="synced")

        def nesting(h):
            # unclosed: QEMU's JSON streamer gives up at its own depth limit
            check_error(h.request("guest-ping"), 3000,
                        invalid("guest-ping", NESTED),
                        invalid("guest-ping", NESTING_LIMIT))
            wait_for(lambda: h.state()["synced"], 30, "no resync")
            # closed, 100 levels deep
            check_error(h.request("guest-ping"), 3000,
                        invalid("guest-ping", NESTED))

        h.attack("nesting", NESTING, nesting, wait="synced")
        print_summary(h)


NONFINITE = r"""
h() {
    case $N in
    1) answer '{"return": {"load1m": 1e999, "load5m": 0.5, "load15m": 0.25}, "id": @ID}' ;;
    2) answer '{"return": {"x": 1e999}, "id": @ID}' ;;
    3) answer '{"return": {"v": -1e999}, "id": @ID}' ;;
    *) answer '{"return": {"load1m": 0.5, "load5m": 0.25, "load15m": 0}, "id": @ID}' ;;
    esac
}
serve h
"""


def test_hostile_nonfinite_numbers():
    """1e999 in replies (a typed command with a number member, guest-ping,
    guest-agent-command): invalid replies; QMP output stays JSON."""
    with Hostile() as h:
        names = [c["name"] for c in h.g.vm.cmd("query-commands")]
        assert "guest-get-load" in names, "guest-get-load is not forwarded"

        def nonfinite(h):
            # h.request() parses the raw bytes strictly (no inf/Infinity)
            check_error(h.request("guest-get-load"), 3000,
                        invalid("guest-get-load", NOT_FINITE))
            check_error(h.request("guest-ping"), 3000,
                        invalid("guest-ping", NOT_FINITE))
            check_error(h.request("guest-agent-command",
                                  {"execute": "guest-ping"}), 3000,
                        invalid("guest-ping", NOT_FINITE),
                        invalid("guest-agent-command", NOT_FINITE))
            # and a good reply after them is delivered
            load = check_return(h.request("guest-get-load"), 3000)
            assert load == {"load1m": 0.5, "load5m": 0.25,
                            "load15m": 0.0}, load

        h.attack("nonfinite", NONFINITE, nonfinite, wait="synced")


# a reply of $1 bytes of padding: valid, QEMU drops the unknown member
BIG_REPLY = r"""
big() {
    { printf '{"return": {}, "id": %s, "pad": "' $id
      pad $1; printf '"}\n'; } >&3
}
"""

LARGE = BIG_REPLY + r"""
# dels N: a reply with N bytes of U+007F, which QMP's JSON escapes as
# \u007F (6 bytes each)
dels() {
    { printf '{"return": {}, "id": %s, "pad": "' $id
      head -c "$1" /dev/zero | tr '\000' '\177'; printf '"}\n'; } >&3
}
h() {
    case $N in
    1) big 8000000 ;;
    2) big 8500000 ;;
    3) dels 1400000 ;;
    *) printf '{"return": "' >&3
       tr '\000' a </dev/zero >&3 & BG=$! ;;
    esac
}
serve h
"""


def test_hostile_large_replies():
    """The default max-reply-size (8 MiB): a valid reply of 8,000,000
    bytes is delivered; one of 8,500,000 bytes, one of 1.4 MB that QMP's
    JSON would make 8.4 MB, and an endless string are refused."""
    size = 8 << 20
    with Hostile() as h:
        def large(h):
            secs, _ = r = h.request("guest-ping", timeout_ms=60000)
            check_return(r, 60000, {})
            print("    8,000,000-byte reply delivered in %.1f s" % secs)
            check_error(h.request("guest-ping", timeout_ms=60000), 60000,
                        invalid("guest-ping", exceeds(size)))
            wait_for(lambda: h.state()["synced"], 30, "no resync")
            check_error(h.request("guest-ping", timeout_ms=60000), 60000,
                        invalid("guest-ping", "reply takes 84000[0-9][0-9] "
                                + re.escape("bytes as QMP sends it, which "
                                            "exceeds max-reply-size (%d "
                                            "bytes)" % size)))
            wait_for(lambda: h.state()["synced"], 30, "no resync")
            check_error(h.request("guest-ping", timeout_ms=60000), 60000,
                        invalid("guest-ping", exceeds(size)))

        h.attack("large", LARGE, large, wait="synced")


# keys N: a reply to guest-ping whose return has N members with keys that
# all fall into one of QDict's 512 buckets: characters 2, 3, 4 and 7 of
# an 8-character key don't change tdb_hash() modulo 512
COLLIDE = r"""
keys() {
    { printf '{"return": {'
      awk -v n="$1" 'BEGIN {
          a = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
          for (i = 0; i < n; i++) {
              printf "%s\"aa%s%s%saa%s\": 0", (i ? ", " : ""),
                  substr(a, i % 62 + 1, 1), substr(a, int(i / 62) % 62 + 1, 1),
                  substr(a, int(i / 3844) % 62 + 1, 1),
                  substr(a, int(i / 238328) % 62 + 1, 1)
          }
      }'
      printf '}, "id": %s}\n' $id; } >&3
}
h() { keys 40000; }
serve h
"""


def test_hostile_colliding_keys():
    """A reply whose object has 40,000 members that all fall into one
    QDict bucket costs QEMU no more than any reply of its size: the
    guest-ping is answered and the other monitors are not stalled (a
    bucket walked per member stalled the main loop for 15 s)."""
    with Hostile() as h:
        def colliding(h):
            r = h.request("guest-ping", timeout_ms=30000)
            check_return(r, 30000, {})

        h.attack("colliding", COLLIDE, colliding, wait="synced")


SMALL = BIG_REPLY + r"""
h() {
    case $N in
    1) big 60000 ;;
    2) big 100000 ;;
    3) printf '{"return": "' >&3
       tr '\000' a </dev/zero >&3 & BG=$! ;;
    *) tr '\000' '[' </dev/zero >&3 & BG=$! ;;
    esac
}
serve h
"""


def test_hostile_small_max_reply_size():
    """-chardev qga,max-reply-size=64K: a reply just below is delivered;
    oversized replies, an endless string and a nesting bomb are refused."""
    size = 64 << 10
    with Hostile(qga_opts=",max-reply-size=64K", max_reply_size=size) as h:
        def small(h):
            check_return(h.request("guest-ping"), 3000, {})
            check_error(h.request("guest-ping"), 3000,
                        invalid("guest-ping", exceeds(size)))
            wait_for(lambda: h.state()["synced"], 30, "no resync")
            check_error(h.request("guest-ping"), 3000,
                        invalid("guest-ping", exceeds(size)))
            wait_for(lambda: h.state()["synced"], 30, "no resync")
            check_error(h.request("guest-ping"), 3000,
                        invalid("guest-ping", NESTED),
                        invalid("guest-ping", NESTING_LIMIT))

        h.attack("small", SMALL, small, wait="synced")
