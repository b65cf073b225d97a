"""The passthrough end to end: the tiny guest's real qemu-ga behind
-chardev qga, used only through QEMU's QMP monitors.

The main monitor is QEMUMachine's (qemu.qmp's legacy synchronous client);
extra monitors are driven with qemu.qmp.QMPClient (asyncio), the library
QMP clients use, to run requests concurrently.
"""

import asyncio
import contextlib
import os
import subprocess
import time

from harness import (QEMU, Guest, QMPAgent, exercise_agent, freeze_agent,
                     tree_version)

# pylint: disable=wrong-import-order
from qemu.qmp import ExecuteError, QMPClient
from qemu.qmp.qmp_client import ExecInterruptedError


async def client(path, name):
    qmp = QMPClient(name)
    await qmp.connect(path)
    return qmp


async def wait_in_flight(ctl, count=1, timeout=60, key="in-flight"):
    """Poll query-guest-agent (on another monitor) until @count requests
    are in flight to the agent (with @key "queued": wait to be sent)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await ctl.execute("query-guest-agent"))[key] != count:
        assert loop.time() < deadline, "no request ever was %s" % key
        await asyncio.sleep(0.01)


async def pending_ping(g):
    """Connect clients 'a' and 'ctl' to the first two extra monitors and
    leave a's guest-ping in flight to the (frozen) agent."""
    a = await client(g.monitors[0], "a")
    ctl = await client(g.monitors[1], "ctl")
    ping = asyncio.ensure_future(a.execute("guest-ping"))
    await wait_in_flight(ctl)
    return a, ctl, ping


def check_agent(g, version_prefix):
    """exercise_agent() through QMP, and query-guest-agent agrees."""
    info = exercise_agent(QMPAgent(g.vm))
    assert info["version"].startswith(version_prefix), info["version"]
    state = g.vm.cmd("query-guest-agent")
    assert state["configured"] and state["guest-connected"] and \
        state["synced"], state
    assert state["version"] == info["version"], state
    return info, state


def test_qmp_agent_current():
    """guest-ping and guest-info on the main QMP monitor, our qemu-ga."""
    with Guest("current", agent="qga") as g:
        secs = g.wait_agent()
        info, _ = check_agent(g, tree_version())
        print("qemu-ga %s usable through QMP %.2f s after QEMU started"
              % (info["version"], secs))


def test_qmp_agent_old_72():
    """The same with Debian bookworm's qemu-ga 7.2."""
    with Guest("bookworm", agent="qga") as g:
        g.wait_agent()
        info, _ = check_agent(g, "7.2.")
        print("old agent %s works through QMP" % info["version"])


def test_qmp_guest_without_agent():
    """A guest that never opens the port: a distinct error, at once."""
    with Guest("current", agent="qga", append="qga.noagent") as g:
        g.wait_console("not starting qemu-ga")
        err = g.qmp_error("guest-ping")
        assert "has not opened" in err["desc"], err
        state = g.vm.cmd("query-guest-agent")
        assert state["configured"] and not state["guest-connected"], state


def test_qmp_no_agent_configured():
    """No qga chardev at all: a distinct error."""
    with Guest("current", agent="none") as g:
        err = g.qmp_error("guest-ping")
        assert "No guest agent is configured" in err["desc"], err
        assert not g.vm.cmd("query-guest-agent")["configured"]


def test_qmp_agent_restart_recovers():
    """qemu-ga killed in the guest closes the port; the guest restarts it;
    QEMU resyncs by itself and the client just goes on."""
    with Guest("current", agent="qga", shell=True) as g:
        g.wait_agent()
        assert g.vm.cmd("guest-ping") == {}
        g.shell("kill $(pidof qemu-ga)")
        # GUEST_AGENT_CHANGE is throttled (1 s; the latest state in a
        # window wins), but init restarts qemu-ga only a second after it
        # exited, so the unavailable state outlasts its window and is
        # reported before the available one
        ev = g.wait_agent_change(False, timeout=60)
        assert ev["data"] == {"chardev": "qga0", "available": False,
                              "reason": "port-closed"}, ev
        g.wait_console("qemu-ga exited")
        ev = g.wait_agent_change(True, timeout=60)
        assert ev["data"] == {"chardev": "qga0", "available": True}, ev
        assert g.vm.cmd("guest-ping") == {}
        assert g.vm.cmd("guest-info")["version"] == tree_version()


def test_qmp_port_closed_mid_request():
    """The agent dies while a request is in flight: that request fails
    with the port-closed error, and the channel recovers."""
    with Guest("current", agent="qga", shell=True, monitors=2) as g:
        g.wait_agent()
        freeze_agent(g)

        async def scenario():
            a, ctl, ping = await pending_ping(g)
            try:
                g.shell("kill -KILL $(pidof qemu-ga)")
                try:
                    await asyncio.wait_for(ping, 60)
                except ExecuteError as e:
                    return str(e)
                raise AssertionError("guest-ping succeeded after the agent "
                                     "was killed")
            finally:
                await a.disconnect()
                await ctl.disconnect()

        desc = asyncio.run(scenario())
        # the frozen agent had read the request
        assert desc == ("Guest agent command 'guest-ping' failed: the guest "
                        "closed the guest agent's port; the guest agent may "
                        "have executed it"), desc
        # the restarted agent (the unavailable state in between may be
        # collapsed by the event's throttling)
        g.wait_agent_change(True, timeout=60)
        assert g.vm.cmd("query-guest-agent")["synced"]
        assert g.vm.cmd("guest-ping") == {}


def test_qmp_slow_agent_does_not_block_other_monitors():
    """While the agent is stopped, monitor A waits for its guest-ping but
    monitor B is served; A's next command is answered after its ping."""
    with Guest("current", agent="qga", shell=True, monitors=2) as g:
        g.wait_agent()
        freeze_agent(g)

        async def scenario():
            a = await client(g.monitors[0], "a")
            b = await client(g.monitors[1], "b")
            try:
                order = []
                ping = asyncio.ensure_future(a.execute("guest-ping"))
                ping.add_done_callback(lambda f: order.append("ping"))
                status = asyncio.ensure_future(a.execute("query-status"))
                status.add_done_callback(lambda f: order.append("status"))
                # B is served while A's guest-ping is in flight
                await wait_in_flight(b)
                for _ in range(3):
                    st = await asyncio.wait_for(b.execute("query-status"), 60)
                    assert st["status"] == "running", st
                assert not ping.done(), ping
                freeze_agent(g, stop=False)
                assert await asyncio.wait_for(ping, 60) == {}
                assert (await asyncio.wait_for(status, 60))["running"]
                # in issue order: the ping's reply came first
                assert order == ["ping", "status"], order
            finally:
                await a.disconnect()
                await b.disconnect()

        asyncio.run(scenario())


def test_qmp_concurrent_clients():
    """Two clients, many guest commands at once: every reply reaches the
    client and request that asked for it."""
    with Guest("current", agent="qga", monitors=2) as g:
        g.wait_agent()

        async def scenario():
            cs = [await client(p, "c%d" % i) for i, p in enumerate(g.monitors)]
            try:
                calls = []
                for i in range(20):
                    c = cs[i % 2]
                    calls.append(c.execute("guest-info" if i % 3 else
                                           "guest-ping"))
                results = await asyncio.wait_for(asyncio.gather(*calls), 120)
                for i, r in enumerate(results):
                    if i % 3:
                        assert r["version"] == tree_version(), r
                    else:
                        assert r == {}, r
            finally:
                for c in cs:
                    await c.disconnect()

        asyncio.run(scenario())


def test_qmp_per_call_timeout():
    """A per-call timeout fails that call; its late reply, which comes
    while the next request waits, is dropped (that request gets its own
    reply) and the channel resyncs."""
    with Guest("current", agent="qga", shell=True, monitors=2) as g:
        g.wait_agent()
        freeze_agent(g)
        before = g.vm.cmd("query-guest-agent")
        err = g.qmp_error("guest-ping", timeout_ms=300)
        assert err["desc"] == ("Guest agent command 'guest-ping' timed out "
                               "after 300 ms; the guest agent may have "
                               "executed it"), err

        async def scenario():
            a = await client(g.monitors[0], "a")
            ctl = await client(g.monitors[1], "ctl")
            try:
                # guest-info waits for the resync; given the late {} of
                # guest-ping it would fail as an invalid reply
                info = asyncio.ensure_future(a.execute("guest-info"))
                await wait_in_flight(ctl, key="queued")
                freeze_agent(g, stop=False)
                return await asyncio.wait_for(info, 60)
            finally:
                await a.disconnect()
                await ctl.disconnect()

        info = asyncio.run(scenario())
        assert info["version"] == tree_version(), info
        state = g.vm.cmd("query-guest-agent")
        # the late reply counts; so do the replies to earlier syncs, if
        # QEMU retried one while the agent was stopped
        assert state["timeouts"] == 1 and state["invalid-replies"] == 0 and \
            state["stale-replies"] > before["stale-replies"], state


def test_qmp_default_timeout():
    """Without a timeout of its own, a command gets the qga chardev's
    default timeout, 30000 ms."""
    with Guest("current", agent="qga", shell=True) as g:
        g.wait_agent()
        freeze_agent(g)
        err = g.qmp_error("guest-ping")
        assert err["desc"] == ("Guest agent command 'guest-ping' timed out "
                               "after 30000 ms; the guest agent may have "
                               "executed it"), err
        freeze_agent(g, stop=False)
        assert g.vm.cmd("guest-ping") == {}


def test_qmp_client_disconnect_with_pending_request():
    """A client that disconnects with a request pending loses only that
    reply; QEMU and the channel go on."""
    with Guest("current", agent="qga", shell=True, monitors=2) as g:
        g.wait_agent()
        freeze_agent(g)

        before = g.vm.cmd("query-guest-agent")

        async def scenario():
            a, ctl, ping = await pending_ping(g)
            await a.disconnect()
            # the client library ends the call of a closed connection
            try:
                rsp = await asyncio.wait_for(ping, 60)
            except ExecInterruptedError:
                pass
            else:
                raise AssertionError("a reply after disconnecting: %r" % rsp)
            await ctl.disconnect()

        asyncio.run(scenario())
        freeze_agent(g, stop=False)
        assert g.vm.cmd("guest-ping") == {}
        # QEMU consumed the agent's reply to the dropped request
        state = g.vm.cmd("query-guest-agent")
        assert state["stale-replies"] == before["stale-replies"] and \
            state["in-flight"] == 0 and state["invalid-replies"] == 0, state
        # a new client on the same monitor gets no stale reply
        async def again():
            a = await client(g.monitors[0], "a2")
            try:
                assert (await a.execute("query-status"))["running"]
                assert await a.execute("guest-ping") == {}
            finally:
                await a.disconnect()
        asyncio.run(again())


def test_qmp_quit_with_pending_request():
    """quit while a guest command is pending: the command fails at once,
    saying why, and QEMU exits cleanly."""
    g = Guest("current", agent="qga", shell=True, monitors=2).start()
    try:
        g.wait_agent()
        freeze_agent(g)

        async def scenario():
            a, ctl, ping = await pending_ping(g)
            await ctl.execute("quit")
            try:
                rsp = await asyncio.wait_for(ping, 60)
            except ExecuteError as e:
                assert str(e) == ("Guest agent command 'guest-ping' failed: "
                                  "QEMU is shutting down; the guest agent "
                                  "may have executed it"), str(e)
            else:
                raise AssertionError("guest-ping succeeded after quit: %r"
                                     % rsp)
            for c in (a, ctl):
                with contextlib.suppress(EOFError, OSError):
                    await c.disconnect()

        asyncio.run(scenario())
        g.vm.wait(timeout=60)
        assert g.vm.exitcode() == 0, g.vm.exitcode()
    finally:
        g.stop()


def test_qmp_migration_of_idle_channel():
    """Live migration with the agent channel idle: the destination resyncs
    and serves guest commands."""
    src = Guest("current", agent="qga").start()
    dst = None
    try:
        src.wait_agent()
        assert src.vm.cmd("guest-ping") == {}
        uri = "unix:" + os.path.join(src.dir, "migrate.sock")
        dst = Guest("current", agent="qga",
                    extra_args=["-incoming", uri]).start()
        src.vm.cmd("migrate", uri=uri)
        deadline = time.monotonic() + 300
        while True:
            status = src.vm.cmd("query-migrate").get("status")
            if status == "completed":
                break
            assert status not in ("failed", "cancelled"), status
            assert time.monotonic() < deadline, "migration did not complete"
            time.sleep(0.1)
        dst.vm.event_wait("RESUME", timeout=60)
        assert dst.vm.cmd("guest-ping") == {}
        assert dst.vm.cmd("guest-info")["version"] == tree_version()
        assert dst.vm.cmd("query-guest-agent")["synced"]
    finally:
        src.stop()
        if dst:
            dst.stop()


def test_qmp_hotplug_agent_channel():
    """chardev-add + device_add attach an agent channel to a running VM;
    device_del + chardev-remove take it away again."""
    with Guest("current", agent="none") as g:
        g.wait_console("waiting for port")
        assert not g.vm.cmd("query-guest-agent")["configured"]
        g.vm.cmd("chardev-add", id="qga0", backend={"type": "qga",
                                                    "data": {}})
        g.vm.cmd("device_add", driver="virtserialport", id="qgaport",
                 chardev="qga0", name="org.qemu.guest_agent.0")
        g.wait_agent()
        assert g.vm.cmd("guest-ping") == {}
        assert g.vm.cmd("guest-info")["version"] == tree_version()
        # a second qga chardev is refused while one exists
        rsp = g.vm.qmp("chardev-add", id="qga1",
                       backend={"type": "qga", "data": {}})
        assert "already the guest agent channel" in rsp["error"]["desc"], rsp
        g.vm.cmd("device_del", id="qgaport")
        # the last state is always reported, throttled or not
        ev = g.wait_agent_change(False, timeout=60)
        assert ev["data"]["chardev"] == "qga0", ev
        assert ev["data"]["reason"] == "removed", ev
        g.vm.event_wait("DEVICE_DELETED", timeout=60,
                        match={"data": {"device": "qgaport"}})
        err = g.qmp_error("guest-ping")
        assert err["desc"] == ("No device is connected to the guest agent "
                               "chardev 'qga0'"), err
        g.vm.cmd("chardev-remove", id="qga0")
        err = g.qmp_error("guest-ping")
        assert "No guest agent is configured" in err["desc"], err


def test_qmp_vm_stopped():
    """A stopped VM fails guest commands at once with their own error;
    after cont the agent is used again."""
    with Guest("current", agent="qga") as g:
        g.wait_agent()
        g.vm.cmd("stop")
        err = g.qmp_error("guest-ping")
        assert "VM is not running" in err["desc"], err
        g.vm.cmd("cont")
        assert g.vm.cmd("guest-ping") == {}


def test_chardev_help_lists_qga():
    out = subprocess.run([QEMU, "-chardev", "help"], text=True, check=True,
                         stdout=subprocess.PIPE).stdout
    assert "qga" in out.split(), out
