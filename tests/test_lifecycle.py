"""Commands without a success response, end to end: guest-shutdown counts
as executed only on evidence, and a failure says whether it may have run.

The tiny guest's real qemu-ga behind -chardev qga; qemu-ga is stopped in the
guest (SIGSTOP through the console shell) so that guest-shutdown reaches the
guest but is not executed, then something else happens.

The second part (Held and the tests after it): every lifecycle event --
host and guest resets, stop/cont, migration and migrate_cancel, device_del,
quit and SIGTERM, clients going away, guest poweroff and panic with each
combination of reboot and shutdown action, the agent killed -- answers
the requests pending at the stopped agent at once and truthfully, and the
agent comes back without client action where the guest does.
"""

import asyncio
import os
import signal
import time

from harness import (AGENT_PORT, BOOT_TIMEOUT, REPLY_TIMEOUT, Guest,
                     QMPSocket, freeze_agent, tree_version, wait_for)

# pylint: disable=wrong-import-order
from qemu.qmp import ExecuteError, QMPClient


async def pending_shutdown(g):
    """Clients 'a' and 'ctl' on the first two extra monitors; a's
    guest-shutdown is in flight to the stopped agent, and the guest has
    received it (the agent's port buffers it)."""
    a = QMPClient("a")
    await a.connect(g.monitors[0])
    ctl = QMPClient("ctl")
    await ctl.connect(g.monitors[1])
    cmd = asyncio.ensure_future(a.execute("guest-shutdown"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while (await ctl.execute("query-guest-agent"))["in-flight"] != 1:
        assert loop.time() < deadline, "guest-shutdown never reached the agent"
        await asyncio.sleep(0.01)
    return a, ctl, cmd


async def failure(cmd, timeout=60):
    """The error description of pending command @cmd, which must fail."""
    try:
        rsp = await asyncio.wait_for(cmd, timeout)
    except ExecuteError as e:
        return e.error.error.desc
    raise AssertionError("the command succeeded: %r" % rsp)


def shutdown_interrupted(g, trigger):
    """guest-shutdown waits for the stopped agent on one monitor; await
    trigger(ctl) with ctl a client of another; return the description of
    the error guest-shutdown must fail with."""
    freeze_agent(g)

    async def scenario():
        a, ctl, cmd = await pending_shutdown(g)
        try:
            await trigger(ctl)
            return await failure(cmd)
        finally:
            await a.disconnect()
            await ctl.disconnect()

    return asyncio.run(scenario())


def test_shutdown_agent_killed_is_no_success():
    """The agent is killed before it executes guest-shutdown: the port
    closes, init restarts qemu-ga, the port opens again.  The command fails
    (it used to succeed when the port closed), says it may have run, and
    the guest keeps running."""
    with Guest("current", agent="qga", shell=True, monitors=2) as g:
        g.wait_agent()

        async def kill_agent(ctl):
            g.shell("kill -KILL $(pidof qemu-ga)")
            assert (await ctl.execute("query-status"))["running"]

        desc = shutdown_interrupted(g, kill_agent)
        assert desc == ("Guest agent command 'guest-shutdown' failed: the "
                        "guest agent's port was opened again; the guest agent"
                        " may have executed it"), desc
        g.wait_agent()
        assert g.vm.cmd("guest-ping") == {}
        assert g.vm.cmd("query-status")["running"]


def test_shutdown_host_reset_is_no_success():
    """system_reset from the host while guest-shutdown waits for the
    stopped agent: the command fails (it used to succeed), and the agent is
    usable again once the guest has rebooted."""
    with Guest("current", agent="qga", shell=True, monitors=2) as g:
        # the harness runs QEMU with -no-reboot, which would make the
        # reset a shutdown
        g.vm.cmd("set-action", reboot="reset")
        g.wait_agent()

        async def reset(ctl):
            await ctl.execute("system_reset")

        desc = shutdown_interrupted(g, reset)
        assert desc == ("Guest agent command 'guest-shutdown' failed: the "
                        "guest was reset by the host; the guest agent may "
                        "have executed it"), desc
        state = g.vm.cmd("query-guest-agent")
        assert "version" not in state, state
        g.wait_agent()
        assert g.vm.cmd("guest-ping") == {}


def test_timeout_says_whether_sent():
    """A timeout of a command the guest received says it may have run; a
    command queued behind it never reached the guest, and says so."""
    with Guest("current", agent="qga", shell=True, monitors=3) as g:
        g.wait_agent()
        freeze_agent(g)

        async def scenario():
            cs = []
            for i, path in enumerate(g.monitors):
                c = QMPClient("c%d" % i)
                await c.connect(path)
                cs.append(c)
            try:
                first = asyncio.ensure_future(
                    cs[0].execute("guest-ping", {"timeout-ms": 3000}))
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60
                while (await cs[2].execute("query-guest-agent"))[
                        "in-flight"] != 1:
                    assert loop.time() < deadline
                    await asyncio.sleep(0.01)
                second = asyncio.ensure_future(
                    cs[1].execute("guest-info", {"timeout-ms": 1000}))
                return (await failure(first)), (await failure(second))
            finally:
                for c in cs:
                    await c.disconnect()

        first, second = asyncio.run(scenario())
        assert first == ("Guest agent command 'guest-ping' timed out after "
                         "3000 ms; the guest agent may have executed it"), first
        assert second == ("Guest agent command 'guest-info' timed out after "
                          "1000 ms; it was not sent to the guest agent"), second
        freeze_agent(g, stop=False)
        assert g.vm.cmd("guest-ping") == {}


# ---------------------------------------------------------------------------
# Every lifecycle event answers the pending guest commands at once and
# truthfully.
#
# Each scenario holds two requests from two monitors with the agent stopped:
# the first in flight (the guest received it), the second queued behind it
# (never sent); both with a timeout of their own (LONG_MS) far beyond the
# failure bound (BOUND) in which the event must answer them, so that a
# timeout can't pass for the answer.  A third monitor triggers the event and
# watches query-guest-agent.  The plain QMPSocket client sees every byte, so
# a second answer to a request would show up as the reply to the next
# command (see answered_once()).

LONG_MS = 60000         # the held requests' own timeout
BOUND = 10.0            # seconds in which an event must answer them
SENT = "the guest agent may have executed it"
NOT_SENT = "it was not sent to the guest agent"


class Held:
    """Requests held by the stopped agent (freeze_agent() first).

    self.ctl (monitor 0) triggers the event and polls; requests[0] (from
    monitor 1) is in flight, the others (monitors 2, ...) queued behind it,
    as query-guest-agent shows.  A context manager: closes its sockets.
    """

    def __init__(self, g, commands=("guest-ping", "guest-info"),
                 timeout_ms=LONG_MS):
        assert len(g.monitors) > len(commands), "not enough monitors"
        self.g = g
        self.socks = []
        self.ctl = self._connect(g.monitors[0])
        self.base = self.state()
        self.requests = []      # (socket, command id, command name)
        for i, name in enumerate(commands):
            sock = self._connect(g.monitors[i + 1])
            rid = sock.send(name, {"timeout-ms": timeout_ms})
            self.requests.append((sock, rid, name))
            wait_for(lambda i=i: self._held(1, i), BOUND,
                     "%s was not %s" % (name, "queued" if i else
                                        "in flight to the agent"))
        self.sent_at = time.monotonic()

    def _connect(self, path):
        sock = QMPSocket(path)
        self.socks.append(sock)
        return sock

    def _held(self, in_flight, queued):
        st = self.state()
        return st["in-flight"] == in_flight and st["queued"] == queued

    def state(self):
        rsp = self.ctl.execute("query-guest-agent")
        assert "return" in rsp, rsp
        return rsp["return"]

    def trigger(self, command, **args):
        """Run @command on the control monitor; returns the time it was
        sent (which starts the failure bound)."""
        t0 = time.monotonic()
        rsp = self.ctl.execute(command, args or None)
        assert "return" in rsp, rsp
        return t0

    def answers(self, t0, bound=BOUND, eof_ok=False):
        """Each request's answer, [(seconds since @t0, reply)], all within
        @bound seconds of @t0; with @eof_ok, the connection closing
        without an answer counts (reply None)."""
        out = []
        for sock, rid, name in self.requests:
            left = t0 + bound - time.monotonic()
            try:
                msg, _ = sock.reply(rid, timeout=max(left, 0.01))
            except TimeoutError as e:
                raise AssertionError("%s was not answered within %.0f s of "
                                     "the event (state %s)"
                                     % (name, bound, self._try_state())) \
                    from e
            except (EOFError, ConnectionResetError):
                if not eof_ok:
                    raise AssertionError("QEMU closed the connection without "
                                         "answering %s" % name) from None
                msg = None
            out.append((time.monotonic() - t0, msg))
        return out

    def _try_state(self):
        try:
            return self.state()
        except Exception as e:  # pylint: disable=broad-except
            return repr(e)

    def failures(self, t0, why, bound=BOUND):
        """Check that each request failed within @bound of @t0 with the
        error for @why (the in-flight one may have run, the queued ones
        were not sent); returns the delays."""
        answers = self.answers(t0, bound)
        self.check_failed(answers, why)
        return [delay for delay, _ in answers]

    def check_failed(self, answers, why):
        """Check @answers (of answers()) as failures()."""
        for i, (_, msg) in enumerate(answers):
            name = self.requests[i][2]
            soft(expect_error, msg, "Guest agent command '%s' failed: %s; %s"
                 % (name, why, NOT_SENT if i else SENT))

    def answered_once(self):
        """No request got a second answer: the next reply on each
        connection is the reply to the next command."""
        for sock, _, _ in self.requests:
            rsp = sock.execute("query-status")
            assert "return" in rsp, rsp

    def closed(self, bound=BOUND):
        """Every request's connection reaches EOF within @bound with no
        further answer."""
        deadline = time.monotonic() + bound
        for sock, _, name in self.requests:
            while True:
                try:
                    msg = sock.message(deadline - time.monotonic())
                except (EOFError, ConnectionResetError):
                    break
                except TimeoutError as e:
                    raise AssertionError("QEMU did not close the connection "
                                         "of %s" % name) from e
                assert "event" in msg, ("a second answer to %s: %s"
                                        % (name, msg))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for sock in self.socks:
            sock.close()


class Checks:
    """A test's checks of exact texts and reasons (soft()) go on after a
    failure, so that one run shows each one that fails; the with block
    fails at its end with all of them."""

    active = None

    def __enter__(self):
        self.failed = []
        Checks.active = self
        return self

    def __exit__(self, exc_type, exc, tb):
        Checks.active = None
        if self.failed and exc_type is None:
            raise AssertionError("%d checks failed:\n  %s"
                                 % (len(self.failed),
                                    "\n  ".join(self.failed)))
        return False


def soft(fn, *args):
    """Run check @fn(*args); inside Checks, a failure is recorded (and
    printed) and the test goes on."""
    try:
        fn(*args)
    except AssertionError as e:
        if Checks.active is None:
            raise
        Checks.active.failed.append(str(e))
        print("CHECK FAILED: %s" % e)


def expect_equal(actual, expected, what):
    assert actual == expected, \
        "%s: expected %r, got %r" % (what, expected, actual)


def expect_reason(g, reason):
    """The GUEST_AGENT_CHANGE available=false after clear_events() gives
    @reason."""
    soft(lambda: expect_equal(unavailable_reason(g), reason,
                              "GUEST_AGENT_CHANGE reason"))


def expect_error(msg, desc):
    assert msg is not None and "error" in msg, \
        "expected %r, got %s" % (desc, msg)
    assert msg["error"] == {"class": "GenericError", "desc": desc}, \
        "expected %r, got %s" % (desc, msg["error"])


def new_command_error(ctl, desc, name="guest-ping"):
    """A new guest command on @ctl fails at once with @desc."""
    t0 = time.monotonic()
    rsp = ctl.execute(name, {"timeout-ms": LONG_MS}, timeout=BOUND)
    soft(expect_error, rsp, desc)
    assert time.monotonic() - t0 < BOUND


def wait_synced(g, timeout=REPLY_TIMEOUT):
    """Wait until query-guest-agent says QEMU is synced with the agent."""
    wait_for(lambda: g.vm.cmd("query-guest-agent")["synced"], timeout,
             "QEMU never synced with the agent")


def boot(g, **actions):
    """Set the actions of started guest @g (set-action), wait for its
    agent and stop the agent."""
    if actions:
        g.vm.cmd("set-action", **actions)
    wait_synced(g, BOOT_TIMEOUT)
    freeze_agent(g)


def lifecycle_guest(monitors=3, **kw):
    return Guest("current", agent="qga", shell=True, monitors=monitors, **kw)


def idle(st):
    """Nothing pending, per query-guest-agent."""
    assert st["in-flight"] == 0 and st["queued"] == 0, st


def unavailable_reason(g):
    """The reason of the GUEST_AGENT_CHANGE available=false that follows
    clear_events() (the state lasts longer than the event's throttle
    window in every scenario that uses this)."""
    return g.wait_agent_change(False, timeout=BOUND)["data"]["reason"]


def recovered(g, timeout=REPLY_TIMEOUT):
    """The agent is usable again without client action: synced,
    guest-ping works, and GUEST_AGENT_CHANGE said it is available."""
    wait_synced(g, timeout)
    assert g.vm.cmd("guest-ping") == {}
    assert g.vm.cmd("guest-info")["version"] == tree_version()
    st = g.vm.cmd("query-guest-agent")
    assert st["guest-connected"] and st["synced"], st
    assert st["version"] == tree_version(), st
    idle(st)
    soft(g.wait_agent_change, True, BOUND)


def report(what, delays):
    print("%s: answered after %s s"
          % (what, ", ".join("%.2f" % d for d in delays)))


def failed_and_recovered(g, h, t0, what, why, reason):
    """@h's requests failed at once (@why), the agent's info is forgotten,
    each was answered once, the event said @reason, and the agent comes
    back by itself."""
    delays = h.failures(t0, why)
    st = h.state()
    idle(st)
    assert "version" not in st, st
    h.answered_once()
    report(what, delays)
    expect_reason(g, reason)
    recovered(g)


def test_host_reset_fails_pending():
    """system_reset from the host: both requests fail at once (the guest
    was reset by the host), the agent comes back by itself."""
    with Checks(), lifecycle_guest() as g:
        boot(g, reboot="reset")
        with Held(g) as h:
            g.clear_events()
            t0 = h.trigger("system_reset")
            failed_and_recovered(g, h, t0, "host reset",
                                 "the guest was reset by the host", "reset")


def test_stop_cont_within_timeout():
    """stop and cont with requests pending, within their timeout: they
    stay pending while the VM is stopped (new ones are refused), and
    complete normally once the VM and the agent run again."""
    with Checks(), lifecycle_guest() as g:
        boot(g)
        with Held(g) as h:
            h.trigger("stop")
            assert h.ctl.execute("query-status")["return"]["status"] == \
                "paused"
            new_command_error(h.ctl, "The guest agent can't be used while "
                              "the VM is not running")
            st = h.state()
            assert st["in-flight"] == 1 and st["queued"] == 1, st
            for sock, _, _ in h.requests:
                sock.poll_events(0.0)   # fails on a reply: nothing yet
            h.trigger("cont")
            freeze_agent(g, stop=False)
            t0 = time.monotonic()
            (d1, ping), (d2, info) = h.answers(t0)
            assert ping == {"return": {}, "id": h.requests[0][1]}, ping
            assert info["return"]["version"] == tree_version(), info
            idle(h.state())
            h.answered_once()
            report("stop/cont, agent resumed", (d1, d2))
        assert g.vm.cmd("guest-ping") == {}


def test_stop_past_timeout():
    """stop with requests pending until their timeout: they time out on
    time with the timeout text (in flight: may have run; queued: not
    sent); after cont the agent is used again."""
    with Checks(), lifecycle_guest() as g:
        boot(g)
        with Held(g, timeout_ms=3000) as h:
            h.trigger("stop")
            t0 = h.sent_at
            answers = h.answers(t0, bound=3 + BOUND)
            for i, (delay, msg) in enumerate(answers):
                name = h.requests[i][2]
                soft(expect_error, msg, "Guest agent command '%s' timed out "
                     "after 3000 ms; %s" % (name, NOT_SENT if i else SENT))
            st = h.state()
            idle(st)
            assert st["timeouts"] == h.base["timeouts"] + 2, (h.base, st)
            assert h.ctl.execute("query-status")["return"]["status"] == \
                "paused"
            h.answered_once()
            report("stop past the timeout (3 s)", [d for d, _ in answers])
            h.trigger("cont")
        freeze_agent(g, stop=False)
        wait_for(lambda: g.vm.cmd("query-guest-agent")["synced"], BOUND,
                 "the agent did not resync")
        assert g.vm.cmd("guest-ping") == {}


def test_late_reply_is_counted_stale():
    """A guest-ping times out against the stopped agent; resumed, the
    agent answers it late: QEMU drops that reply while it resyncs, counts
    it in stale-replies, and the next guest-ping works."""
    with Checks(), lifecycle_guest(monitors=0) as g:
        boot(g)
        before = g.vm.cmd("query-guest-agent")
        err = g.qmp_error("guest-ping", timeout_ms=500)
        assert err["desc"].startswith("Guest agent command 'guest-ping' "
                                      "timed out after 500 ms"), err
        soft(expect_equal, err["desc"], "Guest agent command 'guest-ping' "
             "timed out after 500 ms; " + SENT, "timeout error")
        freeze_agent(g, stop=False)
        wait_for(lambda: g.vm.cmd("query-guest-agent")["synced"], BOUND,
                 "the agent did not resync")
        assert g.vm.cmd("guest-ping") == {}
        after = g.vm.cmd("query-guest-agent")
        soft(expect_equal, after["stale-replies"] > before["stale-replies"],
             True, "stale-replies went up (before %s, after %s)"
             % (before, after))
        assert after["timeouts"] == before["timeouts"] + 1, (before, after)


def migrate_wait(vm, statuses, timeout=300):
    """Poll query-migrate on @vm until its status is one of @statuses;
    returns it."""
    def status():
        st = vm.cmd("query-migrate").get("status")
        return st if st in statuses else None
    return wait_for(status, timeout, "migration never reached %s"
                    % (statuses,), interval=0.05)


def test_migrate_cancel_with_pending():
    """A migration that starts fails the pending requests at once
    (migration started); new ones are refused while it runs; after
    migrate_cancel the source's agent works again."""
    with Checks(), lifecycle_guest() as g:
        boot(g)
        with Held(g) as h:
            # slow enough to stay in progress until cancelled
            h.trigger("migrate-set-parameters", **{"max-bandwidth": 4096})
            g.clear_events()
            t0 = h.trigger("migrate", uri="exec:cat >/dev/null")
            delays = h.failures(t0, "migration started")
            report("migration started", delays)
            assert h.ctl.execute("query-migrate")["return"]["status"] in \
                ("setup", "active"), h.ctl.execute("query-migrate")
            new_command_error(h.ctl, "The guest agent can't be used during "
                              "migration")
            idle(h.state())
            h.answered_once()
            expect_reason(g, "migration")
            h.trigger("migrate_cancel")
            migrate_wait(g.vm, ("cancelled",), timeout=BOUND)
        freeze_agent(g, stop=False)
        recovered(g)
        assert g.vm.cmd("query-status")["status"] == "running"


def test_migration_with_pending():
    """Live migration with requests pending: they fail at once on the
    source (migration started); before the migration the destination
    refuses guest commands (the VM is not running there); after it the
    destination's agent works once it runs again."""
    with Checks():
        src = lifecycle_guest()
        dst = None
        try:
            src.start()
            boot(src)
            uri = "unix:" + os.path.join(src.dir, "migrate.sock")
            dst = lifecycle_guest(extra_args=["-incoming", uri])
            dst.start()
            soft(expect_error, dst.vm.qmp("guest-ping"), "The guest agent "
                 "can't be used while the VM is not running")
            with Held(src) as h:
                src.clear_events()
                t0 = h.trigger("migrate", uri=uri)
                delays = h.failures(t0, "migration started")
                report("migration", delays)
                idle(h.state())
                h.answered_once()
                expect_reason(src, "migration")
                migrate_wait(src.vm, ("completed", "failed", "cancelled"))
                assert src.vm.cmd("query-migrate")["status"] == "completed"
            dst.vm.event_wait("RESUME", timeout=REPLY_TIMEOUT)
            # the agent was stopped when the guest migrated
            freeze_agent(dst, stop=False)
            recovered(dst)
            idle(src.vm.cmd("query-guest-agent"))
        finally:
            src.stop()
            if dst:
                dst.stop()


def test_port_device_removed_and_added_again():
    """device_del of the agent's port with requests pending fails them at
    once (the port device was removed); with the chardev left and no
    device guest-ping says so; chardev-remove, chardev-add and device_add
    of a new port, and the agent works again."""
    with Checks(), lifecycle_guest() as g:
        boot(g)
        with Held(g) as h:
            g.clear_events()
            t0 = h.trigger("device_del", id="qgaport")
            delays = h.failures(t0, "the guest agent's port device was "
                                "removed")
            report("device_del", delays)
            g.vm.event_wait("DEVICE_DELETED", timeout=BOUND,
                            match={"data": {"device": "qgaport"}})
            st = h.state()
            idle(st)
            assert st["configured"] and not st["guest-connected"] and \
                not st["synced"], st
            h.answered_once()
            expect_reason(g, "removed")
            new_command_error(h.ctl, "No device is connected to the guest "
                              "agent chardev 'qga0'")
            h.trigger("chardev-remove", id="qga0")
            new_command_error(h.ctl, "No guest agent is configured")
            assert not h.state()["configured"]
        # the stopped agent still holds the old port open; init restarts
        # it on the new one
        g.shell_run("kill -KILL $(pidof qemu-ga)")
        g.vm.cmd("chardev-add", id="qga0", backend={"type": "qga",
                                                    "data": {}})
        g.vm.cmd("device_add", driver="virtserialport", id="qgaport",
                 chardev="qga0", name=AGENT_PORT)
        recovered(g)


def stop_exited(g):
    """g.stop() for a QEMU that was told to exit, or whose guest was:
    without a quit of its own, once QEMU is gone (or after BOUND)."""
    try:
        deadline = time.monotonic() + BOUND
        while g.vm.is_running() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not g.vm.is_running():
            g.vm.wait(timeout=10)
    finally:
        g.stop()


def exits_cleanly(g, t0, bound=BOUND):
    """QEMU exits with status 0 within @bound of @t0."""
    wait_for(lambda: g.vm.exitcode() is not None, t0 + bound -
             time.monotonic(), "QEMU did not exit", interval=0.01)
    took = time.monotonic() - t0
    g.vm.wait(timeout=10)
    assert g.vm.exitcode() == 0, g.vm.exitcode()
    return took


def quit_with_pending(how):
    with Checks():
        g = lifecycle_guest()
        try:
            g.start()
            boot(g)
            with Held(g) as h:
                t0 = time.monotonic()
                if how == "quit":
                    h.ctl.send("quit")
                else:
                    os.kill(g.vm.get_pid(), signal.SIGTERM)
                for i, (_, msg) in enumerate(h.answers(t0, eof_ok=True)):
                    name = h.requests[i][2]
                    print("%s: %s" % (name, msg or "connection closed"))
                    if msg is None:
                        continue
                    # an answer before the connection closes must be a
                    # truthful failure: the guest did not shut down, the host
                    # ended QEMU
                    soft(expect_error, msg, "Guest agent command '%s' failed: "
                         "QEMU is shutting down; %s"
                         % (name, NOT_SENT if i else SENT))
                h.closed(bound=t0 + BOUND - time.monotonic())
                print("%s: QEMU exited after %.2f s"
                      % (how, exits_cleanly(g, t0)))
        finally:
            stop_exited(g)


def test_quit_with_pending_and_queued():
    """quit with a request in flight and one queued: QEMU exits with
    status 0 at once; the clients see their connections close."""
    quit_with_pending("quit")


def test_sigterm_with_pending_and_queued():
    """The same for SIGTERM to QEMU."""
    quit_with_pending("SIGTERM")


def test_client_disconnects_with_pending():
    """Clients that disconnect with their request in flight or queued
    lose only their own replies: the request queued behind theirs is
    answered once the agent runs again, and new clients on the same
    monitors get no stale replies."""
    with Checks(), lifecycle_guest(monitors=4) as g:
        boot(g)
        with Held(g, ("guest-ping", "guest-info", "guest-ping")) as h:
            (a, _, _), (d, _, _), survivor = h.requests
            a.close()
            d.close()
            h.requests = [survivor]
            assert h.ctl.execute("query-status")["return"]["running"]
            freeze_agent(g, stop=False)
            t0 = time.monotonic()
            ((delay, msg),) = h.answers(t0)
            assert msg == {"return": {}, "id": survivor[1]}, msg
            report("queued behind disconnected clients", (delay,))
            h.answered_once()
            wait_for(lambda: h.state()["in-flight"] == 0 and
                     h.state()["queued"] == 0, BOUND,
                     "the requests of the disconnected clients were never "
                     "done")
        for path in g.monitors[1:3]:
            c = QMPSocket(path)
            try:
                assert c.execute("query-status")["return"]["running"]
                assert c.execute("guest-ping") == {"return": {},
                                                   "id": c.next_id}
            finally:
                c.close()


def shut_down_and_exit(g, h, t0, why):
    """The guest shuts down with @h pending and QEMU exits: the requests
    are answered (@why) before the connections close, QEMU exits 0."""
    answers = h.answers(t0)
    h.closed(bound=t0 + BOUND - time.monotonic())
    took = exits_cleanly(g, t0)
    h.check_failed(answers, why)
    return [delay for delay, _ in answers], took


# Linux closes the agent's port a few milliseconds before the machine
# powers off, and QEMU answers at once with what it knows then
POWEROFF_WHY = "the guest closed the guest agent's port"


def test_guest_poweroff_with_pending():
    """The guest powers off with requests pending and QEMU exits: both
    fail at once (the port closed first), before QEMU exits with status
    0."""
    with Checks():
        g = lifecycle_guest()
        try:
            g.start()
            boot(g)
            with Held(g) as h:
                t0 = time.monotonic()
                g.shell("poweroff -f")
                delays, took = shut_down_and_exit(g, h, t0, POWEROFF_WHY)
                report("guest poweroff", delays)
                print("QEMU exited after %.2f s" % took)
        finally:
            stop_exited(g)


def shut_down_and_paused(g, h, t0, why="the guest shut down",
                         why_event="shutdown"):
    """The guest shut down (shutdown action pause) with @h pending: both
    failed at once, the agent is reported gone, new commands are refused;
    system_reset and cont bring it back."""
    # the error texts and the event's reason are checked last, so that a
    # wrong reason does not hide the rest
    answers = h.answers(t0)
    wait_for(lambda: h.ctl.execute("query-status")["return"]["status"] ==
             "shutdown", BOUND, "the VM did not enter runstate shutdown")
    st = h.state()
    idle(st)
    assert not st["guest-connected"] and not st["synced"], st
    assert "version" not in st, st
    h.answered_once()
    new_command_error(h.ctl, "The guest agent can't be used while the VM "
                      "is not running")
    reason = []
    soft(lambda: reason.append(unavailable_reason(g)))     # checked last
    # with reboot action shutdown, system_reset would shut down again
    h.trigger("set-action", reboot="reset")
    h.trigger("system_reset")
    wait_for(lambda: h.ctl.execute("query-status")["return"]["status"] !=
             "shutdown", BOUND, "system_reset did not leave runstate "
             "shutdown")
    h.trigger("cont")
    recovered(g)
    h.check_failed(answers, why)
    soft(expect_equal, reason, [why_event], "GUEST_AGENT_CHANGE reason")
    return [delay for delay, _ in answers]


def test_guest_poweroff_paused_with_pending():
    """The same with shutdown action pause (-no-shutdown): the VM stays in
    runstate shutdown; the requests fail at once all the same, the agent
    is reported gone and unusable until system_reset and cont reboot the
    guest."""
    with Checks(), lifecycle_guest() as g:
        boot(g, shutdown="pause")
        with Held(g) as h:
            g.clear_events()
            t0 = time.monotonic()
            g.shell("poweroff -f")
            report("guest poweroff, paused",
                   shut_down_and_paused(g, h, t0, POWEROFF_WHY,
                                        "port-closed"))


PANIC = "echo c > /proc/sysrq-trigger"


def test_guest_panic_reboot_reset():
    """A guest panic (panic=-1: the kernel resets the machine at once)
    with reboot action reset, with shutdown action poweroff and then
    pause: a guest reset, the requests fail at once (the guest was reset),
    and the agent comes back after the reboot."""
    with Checks(), lifecycle_guest() as g:
        boot(g, reboot="reset")
        for shutdown in ("poweroff", "pause"):
            g.vm.cmd("set-action", shutdown=shutdown)
            with Held(g) as h:
                g.clear_events()
                t0 = time.monotonic()
                g.shell(PANIC)
                delays = h.failures(t0, "the guest was reset")
                idle(h.state())
                h.answered_once()
                report("panic, reboot=reset shutdown=%s" % shutdown, delays)
                expect_reason(g, "reset")
                recovered(g)
                assert h.ctl.execute("query-status")["return"]["running"]
            freeze_agent(g)


def test_guest_panic_reboot_shutdown_pause():
    """A guest panic with reboot action shutdown (-no-reboot) and shutdown
    action pause: the reset becomes a shutdown, the VM pauses in runstate
    shutdown; as with a guest poweroff the requests fail at once (the
    guest shut down) until system_reset and cont."""
    with Checks(), lifecycle_guest() as g:
        boot(g, reboot="shutdown", shutdown="pause")
        with Held(g) as h:
            g.clear_events()
            t0 = time.monotonic()
            g.shell(PANIC)
            report("panic, reboot=shutdown shutdown=pause",
                   shut_down_and_paused(g, h, t0))


def test_guest_panic_reboot_shutdown_poweroff():
    """A guest panic with reboot action shutdown and shutdown action
    poweroff: the requests fail at once (the guest shut down) before QEMU
    exits with status 0."""
    with Checks():
        g = lifecycle_guest()
        try:
            g.start()
            boot(g, reboot="shutdown", shutdown="poweroff")
            with Held(g) as h:
                t0 = time.monotonic()
                g.shell(PANIC)
                delays, took = shut_down_and_exit(g, h, t0,
                                                  "the guest shut down")
                report("panic, reboot=shutdown shutdown=poweroff", delays)
                print("QEMU exited after %.2f s" % took)
        finally:
            stop_exited(g)


def test_agent_killed_with_pending():
    """qemu-ga killed with kill -9 while a request is in flight and one
    queued: the port closes, both fail at once (the guest closed the
    port), init restarts qemu-ga and QEMU resyncs by itself."""
    with Checks(), lifecycle_guest() as g:
        boot(g)
        with Held(g) as h:
            g.clear_events()
            t0 = time.monotonic()
            g.shell("kill -KILL $(pidof qemu-ga)")
            failed_and_recovered(g, h, t0, "agent killed",
                                 "the guest closed the guest agent's port",
                                 "port-closed")


def test_no_syncs_while_shut_down():
    """QEMU resyncing with the stopped agent (after a timeout) stops
    sending syncs when the guest shuts down into runstate shutdown (a
    panic with reboot action shutdown and shutdown action pause: the port
    stays open), and syncs again once the guest is reset and runs."""
    with Checks():
        g = lifecycle_guest(monitors=0)
        trace = os.path.join(g.dir, "trace.log")
        g.vm.add_args("-trace", "qga_sync_send", "-D", trace)

        def syncs():
            try:
                with open(trace, encoding="utf-8", errors="replace") as f:
                    return f.read().count("qga_sync_send")
            except FileNotFoundError:
                return 0

        try:
            g.start()
            boot(g, reboot="shutdown", shutdown="pause")
            err = g.qmp_error("guest-ping", timeout_ms=200)
            assert "timed out after 200 ms" in err["desc"], err
            assert not g.vm.cmd("query-guest-agent")["synced"]
            sent = syncs()
            assert sent >= 1, "no sync sent after the timeout"
            g.shell(PANIC)
            wait_for(lambda: g.vm.cmd("query-status")["status"] == "shutdown",
                     BOUND, "the VM did not enter runstate shutdown")
            down = syncs()
            # QEMU retries a sync after 1 s, then 2 s, ...: a window of 3.5 s
            # would see at least one retry (a bounded observation of
            # something that must not happen, not a synchronisation)
            time.sleep(3.5)
            soft(expect_equal, syncs() - down, 0, "syncs sent while the guest "
                 "was shut down")
            g.vm.cmd("set-action", reboot="reset")
            g.vm.cmd("system_reset")
            wait_for(lambda: g.vm.cmd("query-status")["status"] != "shutdown",
                     BOUND, "system_reset did not leave runstate shutdown")
            g.vm.cmd("cont")
            recovered(g)
            assert syncs() > down
        finally:
            g.stop()
