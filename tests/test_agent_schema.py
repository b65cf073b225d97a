"""The guest-* commands of QEMU's QMP schema against the agent's own schema.

qga/qapi-schema.json is read here with QAPI's own parser and semantic
checks (scripts/qapi/schema.py: QAPISchema), not with the series'
derivation (scripts/qga-qmp-schema.py), its generator
(scripts/qapi/qga_proxy.py) or its test table.  Every agent command except
guest-sync and guest-sync-delimited must be a QMP command in the running
QEMU's query-qmp-schema with the same arguments (name, type, optional),
plus an optional int 'timeout-ms', and the same return type, compared
structure by structure (introspection hides type names); and QMP has no
guest-* command the agent's schema lacks, other than QEMU's own
guest-agent-command.  The guest build's 'if'
conditions don't apply: QEMU can't know the guest's operating system.
"""

import os
import subprocess
import sys
import tempfile

from harness import QEMU, TREE

# pylint: disable=wrong-import-position,import-error
from qemu.machine import QEMUMachine  # noqa: E402

sys.path.insert(0, os.path.join(TREE, "scripts"))
from qapi.schema import (QAPISchema, QAPISchemaAlternateType,  # noqa: E402
                         QAPISchemaArrayType, QAPISchemaBuiltinType,
                         QAPISchemaEnumType, QAPISchemaObjectType,
                         QAPISchemaVisitor)

AGENT_SCHEMA = os.path.join(TREE, "qga", "qapi-schema.json")
NOT_FORWARDED = {"guest-sync", "guest-sync-delimited"}


class Mismatch(AssertionError):
    pass


class Compare:
    """Compare QAPISchema types with query-qmp-schema's entities."""

    def __init__(self, qmp_schema):
        self.qmp = {e["name"]: e for e in qmp_schema}
        self.seen = set()

    def entity(self, name, where):
        if name not in self.qmp:
            raise Mismatch("%s: query-qmp-schema lacks type %r"
                           % (where, name))
        return self.qmp[name]

    def type(self, typ, name, where):
        """Agent type @typ (None: no value) against QMP type @name."""
        ent = self.entity(name, where)
        meta = ent["meta-type"]
        if (id(typ), name) in self.seen:
            return
        self.seen.add((id(typ), name))
        if typ is None or (isinstance(typ, QAPISchemaObjectType)
                           and typ.is_empty() and not typ.branches):
            self.expect(meta == "object" and not ent["members"]
                        and "variants" not in ent, where,
                        "no value (an empty object)", ent)
        elif isinstance(typ, QAPISchemaBuiltinType):
            self.expect(meta == "builtin"
                        and ent["json-type"] == typ.json_type(), where,
                        "builtin of JSON type %s" % typ.json_type(), ent)
        elif isinstance(typ, QAPISchemaEnumType):
            want = [m.name for m in typ.members]
            got = [m["name"] for m in ent.get("members", [])]
            self.expect(meta == "enum" and got == want, where,
                        "enum %s" % want, ent)
        elif isinstance(typ, QAPISchemaArrayType):
            self.expect(meta == "array", where, "array", ent)
            self.type(typ.element_type, ent["element-type"], where + "[]")
        elif isinstance(typ, QAPISchemaAlternateType):
            self.expect(meta == "alternate" and len(ent["members"]) ==
                        len(typ.alternatives.variants), where,
                        "alternate of %d" % len(typ.alternatives.variants),
                        ent)
            for v, m in zip(typ.alternatives.variants, ent["members"]):
                self.type(v.type, m["type"], "%s|%s" % (where, v.name))
        elif isinstance(typ, QAPISchemaObjectType):
            self.expect(meta == "object", where, "object", ent)
            self.members(typ.members, ent["members"], where)
            if typ.branches:
                self.expect(ent.get("tag") == typ.branches.tag_member.name,
                            where, "tag %s" % typ.branches.tag_member.name,
                            ent)
                want = {v.name: v.type for v in typ.branches.variants}
                got = {v["case"]: v["type"] for v in ent.get("variants", [])}
                self.expect(sorted(got) == sorted(want), where,
                            "variants %s" % sorted(want), ent)
                for case, vtyp in want.items():
                    self.type(vtyp, got[case], "%s{%s}" % (where, case))
            else:
                self.expect("variants" not in ent, where, "no variants", ent)
        else:
            raise Mismatch("%s: unexpected agent type %r" % (where, typ))

    def members(self, want, got, where):
        """Agent members @want (QAPISchemaObjectTypeMember) against
        introspection's @got."""
        names = [m["name"] for m in got]
        self.expect(names == [m.name for m in want], where,
                    "members %s" % [m.name for m in want], names)
        for m, g in zip(want, got):
            self.expect(("default" in g) == m.optional, where + "." + m.name,
                        "optional" if m.optional else "mandatory", g)
            self.type(m.type, g["type"], where + "." + m.name)

    @staticmethod
    def expect(ok, where, what, got):
        if not ok:
            raise Mismatch("%s: expected %s, query-qmp-schema has %r"
                           % (where, what, got))


class CommandNames(QAPISchemaVisitor):
    def __init__(self):
        self.names = []

    def visit_command(self, name, *args, **kwargs):
        self.names.append(name)


def agent_commands():
    """The agent schema's commands (QAPISchemaCommand) by name."""
    schema = QAPISchema(AGENT_SCHEMA)
    visitor = CommandNames()
    schema.visit(visitor)
    return {name: schema.lookup_entity(name) for name in visitor.names}


def qmp_schema():
    vm = QEMUMachine(QEMU, args=["-machine", "none", "-nodefaults"])
    vm.launch()
    try:
        return vm.cmd("query-qmp-schema")
    finally:
        vm.shutdown()


def test_qmp_schema_matches_agent_schema():
    agent = agent_commands()
    assert len(agent) > len(NOT_FORWARDED) + 30, sorted(agent)
    assert NOT_FORWARDED <= set(agent), sorted(agent)
    entities = qmp_schema()
    cmp = Compare(entities)
    qmp_guest = {e["name"] for e in entities
                 if e["meta-type"] == "command" and
                 e["name"].startswith("guest-") and
                 e["name"] != "guest-agent-command"}
    want = set(agent) - NOT_FORWARDED
    assert qmp_guest == want, ("QMP lacks %s, has extra %s"
                               % (sorted(want - qmp_guest),
                                  sorted(qmp_guest - want)))
    timeout = cmp.entity("int", "timeout-ms")
    for name in sorted(want):
        cmd, ent = agent[name], cmp.qmp[name]
        arg_ent = cmp.entity(ent["arg-type"], name)
        assert arg_ent["meta-type"] == "object", (name, arg_ent)
        members = list(cmd.arg_type.members) if cmd.arg_type else []
        got = arg_ent["members"]
        # QEMU's own argument, last
        assert got and got[-1]["name"] == "timeout-ms" and \
            "default" in got[-1] and got[-1]["type"] == timeout["name"], \
            (name, got)
        assert not any(m.name == "timeout-ms" for m in members), name
        assert "variants" not in arg_ent, (name, arg_ent)
        cmp.members(members, got[:-1], name)
        cmp.type(cmd.ret_type, ent["ret-type"], name + "->")
    print("%d agent commands match query-qmp-schema, argument by argument"
          % len(want))


DERIVE = os.path.join(TREE, "scripts", "qga-qmp-schema.py")
DERIVED = os.path.join(TREE, "qapi", "guest-agent-commands.json")


def derive_check(qga_schema, derived):
    return subprocess.run(
        ["/usr/bin/python3", DERIVE, "--check", qga_schema, derived],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        check=False)


def test_derived_module_is_up_to_date():
    """qapi/guest-agent-commands.json is what scripts/qga-qmp-schema.py
    derives from qga/qapi-schema.json (the build runs the same check)."""
    proc = derive_check(AGENT_SCHEMA, DERIVED)
    assert proc.returncode == 0, proc.stdout


def test_derived_module_check_fails_when_stale():
    """A change to the agent's schema that the committed module lacks
    fails the check, with a message that says how to update it."""
    with open(AGENT_SCHEMA, encoding="utf-8") as f:
        text = f.read()
    changed = text.replace("# Ping the guest agent, a non-error return",
                           "# Ping the guest agent, a non-error reply", 1)
    assert changed != text
    with tempfile.TemporaryDirectory(prefix="qga-derive-") as tmp:
        path = os.path.join(tmp, "qapi-schema.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(changed)
        proc = derive_check(path, DERIVED)
        assert proc.returncode != 0, proc.stdout
        assert "is out of date" in proc.stdout, proc.stdout
        assert "qga-qmp-schema.py" in proc.stdout, proc.stdout
        # and the module written from the changed schema passes it
        out = os.path.join(tmp, "guest-agent-commands.json")
        subprocess.run(["/usr/bin/python3", DERIVE, path, out], check=True)
        with open(out, encoding="utf-8") as f:
            assert "a non-error reply" in f.read()
        assert derive_check(path, out).returncode == 0
