"""The harness itself, with stock QEMU: qemu-ga behind a unix socket chardev.

These boot the tiny guest under TCG and talk to the real qemu-ga the way
management tools do today.  They prove the harness (guest builder, QEMU
launcher, agent client) before any passthrough code is involved.
"""

from harness import AgentError, Guest, agent_exec, exercise_agent, tree_version


def test_socket_agent_current():
    """Our own qemu-ga (from the build) over virtio-serial + socket chardev."""
    with Guest("current") as g:
        boot = g.wait_agent()
        info = exercise_agent(g.agent)
        assert info["version"] == tree_version(), (info["version"],
                                                   tree_version())
        print("agent %s answered %.2f s after QEMU started"
              % (info["version"], boot))


def test_socket_agent_old_72():
    """Debian bookworm's qemu-ga 7.2 (the old agent for version skew)."""
    with Guest("bookworm") as g:
        g.wait_agent()
        info = exercise_agent(g.agent)
        assert info["version"].startswith("7.2."), info["version"]
        print("old agent %s works" % info["version"])


def test_harness_fails_without_agent():
    """Negative control: a guest that boots but starts no qemu-ga makes
    the harness's sync fail (so the tests above cannot pass vacuously)."""
    with Guest("current", append="qga.noagent") as g:
        g.wait_console("not starting qemu-ga")
        try:
            g.agent.sync(timeout=5)
        except AgentError as e:
            print("as expected: %s" % e)
        else:
            raise AssertionError("sync succeeded with no agent running")


def test_socket_agent_restart():
    """qemu-ga killed in the guest (through the console shell) closes the
    port; the guest restarts it and a fresh sync reaches the new agent."""
    with Guest("current", shell=True) as g:
        g.wait_agent()
        pid1 = agent_exec(g.agent, "/bin/pidof", ["qemu-ga"])["out-data"].strip()
        assert pid1.isdigit(), pid1
        g.shell("kill %s" % pid1.decode())
        g.wait_console("qemu-ga exited")
        g.wait_agent()
        pid2 = agent_exec(g.agent, "/bin/pidof", ["qemu-ga"])["out-data"].strip()
        assert pid2 != pid1, (pid1, pid2)
        print("qemu-ga %s killed, %s answered after resync"
              % (pid1.decode(), pid2.decode()))
