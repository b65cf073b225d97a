"""Commands without a success response, end to end: guest-shutdown counts
as executed only on evidence, and a failure says whether it may have run.

The tiny guest's real qemu-ga behind -chardev qga; qemu-ga is stopped in the
guest (SIGSTOP through the console shell) so that guest-shutdown reaches the
guest but is not executed, then something else happens.
"""

import asyncio

from harness import Guest, freeze_agent

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


def test_shutdown_agent_killed_is_no_success():
    """The agent is killed before it executes guest-shutdown: the port
    closes, init restarts qemu-ga, the port opens again.  The command fails
    (it used to succeed when the port closed), says it may have run, and
    the guest keeps running."""
    with Guest("current", agent="qga", shell=True, monitors=2) as g:
        g.wait_agent()
        freeze_agent(g)

        async def scenario():
            a, ctl, cmd = await pending_shutdown(g)
            try:
                g.shell("kill -KILL $(pidof qemu-ga)")
                desc = await failure(cmd)
                assert (await ctl.execute("query-status"))["running"]
                return desc
            finally:
                await a.disconnect()
                await ctl.disconnect()

        desc = asyncio.run(scenario())
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
        freeze_agent(g)

        async def scenario():
            a, ctl, cmd = await pending_shutdown(g)
            try:
                await ctl.execute("system_reset")
                return await failure(cmd)
            finally:
                await a.disconnect()
                await ctl.disconnect()

        desc = asyncio.run(scenario())
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
                    cs[0].execute("guest-ping", {"timeout": 3000}))
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60
                while (await cs[2].execute("query-guest-agent"))[
                        "in-flight"] != 1:
                    assert loop.time() < deadline
                    await asyncio.sleep(0.01)
                second = asyncio.ensure_future(
                    cs[1].execute("guest-info", {"timeout": 1000}))
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
