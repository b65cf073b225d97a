"""The manuals that the series changes, as QEMU's build renders them.

QEMU is configured with --enable-docs, and since the tree is a git tree
meson's werror is on, so Sphinx runs with -W: a broken reference or bad
rST in the series fails the build itself.  These checks read the HTML
(and the man page) that the build made, and compare it with the guest
agent's own schema, read with QEMU's QAPI parser from the tree: the list
of commands and their arguments is derived from the schema, not written
down here.
"""

import html.parser
import os
import re
import sys

from harness import BUILD, TREE

MANUAL = os.path.join(BUILD, "docs", "manual")
QMP_REF = os.path.join(MANUAL, "interop", "qemu-qmp-ref.html")
QMP_INDEX = os.path.join(MANUAL, "qapi-qmp-index.html")
SYSTEM_INDEX = os.path.join(MANUAL, "system", "index.html")
PASSTHROUGH_PAGE = os.path.join(MANUAL, "system", "guest-agent-passthrough.html")
QMP_MAN = os.path.join(BUILD, "docs", "qemu-qmp-ref.7")
QGA_SCHEMA = os.path.join(TREE, "qga", "qapi-schema.json")

# How the QMP reference names the anchor of a forwarded command
ANCHOR = "command-QMP-guest-agent-commands.%s"
NOT_FORWARDED = ("guest-sync", "guest-sync-delimited")


class Command:
    def __init__(self, name, args, since):
        self.name = name
        self.args = args        # [(name, optional)], in schema order
        self.since = since


def agent_commands():
    """Every command of qga/qapi-schema.json, read with QEMU's own QAPI
    parser (the plain one, not the series' transformation of it)."""
    sys.path.insert(0, os.path.join(TREE, "scripts"))
    try:
        # pylint: disable=import-outside-toplevel
        from qapi.schema import QAPISchema, QAPISchemaVisitor
    finally:
        sys.path.pop(0)

    cmds = {}

    class Visitor(QAPISchemaVisitor):
        # pylint: disable=too-many-arguments
        def visit_command(self, name, info, ifcond, features, arg_type,
                          ret_type, *rest):
            members = arg_type.members if arg_type else []
            cmds[name] = [(m.name, m.optional) for m in members]

    schema = QAPISchema(QGA_SCHEMA)
    schema.visit(Visitor())
    since = {d.symbol: d.since.text for d in schema.docs
             if d.symbol and d.since}
    assert len(cmds) > 40, "only %d commands in %s" % (len(cmds), QGA_SCHEMA)
    return {n: Command(n, a, since.get(n)) for n, a in cmds.items()}


class ObjectText(html.parser.HTMLParser):
    """The text of each QAPI object description (<dl class="qapi ...">)
    whose <dt> has an id, keyed by that id; and every id and every link
    target of the page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.objects = {}
        self.ids = set()
        self.hrefs = set()
        self._depth = 0          # nesting of <dl>
        self._capture = []       # [(id, depth of its <dl>, [text])]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if "href" in attrs:
            self.hrefs.add(attrs["href"])
        if tag == "dl":
            self._depth += 1
        elif tag == "dt" and attrs.get("id", "").startswith(
                ("command-", "object-", "enum-", "alternate-", "event-")):
            self._capture.append((attrs["id"], self._depth, []))

    def handle_endtag(self, tag):
        if tag != "dl":
            return
        while self._capture and self._capture[-1][1] == self._depth:
            ident, _, text = self._capture.pop()
            self.objects[ident] = re.sub(r"\s+", " ", "".join(text)).strip()
        self._depth -= 1

    def handle_data(self, data):
        for _, _, text in self._capture:
            text.append(data)


def parse(path):
    assert os.path.exists(path), (
        "%s is missing: QEMU's build did not make the manuals "
        "(configured with --enable-docs?)" % path)
    parser = ObjectText()
    with open(path, encoding="utf-8") as f:
        parser.feed(f.read())
    parser.close()
    return parser


def test_qmp_reference_documents_every_guest_agent_command():
    """Every forwarded command has an entry in the QMP reference, in
    namespace QMP, with each of the agent schema's arguments (optional
    where the schema says so), the added 'timeout-ms', and a 'Since' that
    names QEMU's version and the guest agent's."""
    page = parse(QMP_REF)
    commands = agent_commands()
    problems = []
    checked = 0
    for name, cmd in sorted(commands.items()):
        anchor = ANCHOR % name
        if name in NOT_FORWARDED:
            if anchor in page.ids:
                problems.append("%s is documented as a QMP command" % name)
            continue
        text = page.objects.get(anchor)
        if text is None:
            problems.append("%s: no entry %s" % (name, anchor))
            continue
        checked += 1
        if not text.startswith("Command %s " % name):
            problems.append("%s: entry starts %r" % (name, text[:60]))
        if cmd.since and not re.search(
                r"\(Since: \d+\.\d+, guest agent %s\)" % re.escape(cmd.since),
                text):
            problems.append("%s: no 'Since: X.Y, guest agent %s' in %r"
                            % (name, cmd.since, text[:200]))
        for arg, optional in cmd.args + [("timeout-ms", True)]:
            m = re.search(r"(?:^|[ :]) ?%s \(([^)]*)\) –" % re.escape(arg),
                          text)
            if not m:
                problems.append("%s: argument %s not documented" % (name, arg))
            elif ("optional" in m.group(1)) != optional:
                problems.append("%s: argument %s documented as %r"
                                % (name, arg, m.group(1)))
        if "timeout-ms (int, optional) – how long to wait for the guest " \
           "agent, in milliseconds" not in text:
            problems.append("%s: timeout-ms's description is missing" % name)
    assert not problems, "\n".join(problems)
    assert checked == len(commands) - len(NOT_FORWARDED), checked
    # The guest agent manual's introduction is replaced by ours
    assert "guest-agent-commands" in page.ids, "no section 'Guest agent commands'"
    print("QMP reference: %d guest agent commands documented" % checked)


def test_qmp_reference_entries_are_in_qmp_index():
    """The QMP index lists the forwarded commands; the guest agent's own
    reference still documents them in its namespace."""
    index = parse(QMP_INDEX)
    qga_ref = parse(os.path.join(MANUAL, "interop", "qemu-ga-ref.html"))
    missing = []
    for name in agent_commands():
        if name in NOT_FORWARDED:
            continue
        if "interop/qemu-qmp-ref.html#" + ANCHOR % name not in index.hrefs:
            missing.append("QMP index: " + name)
        if "command-QGA-qapi-schema.%s" % name not in qga_ref.ids:
            missing.append("guest agent reference: " + name)
    assert not missing, "\n".join(missing)


def test_qmp_man_page_documents_guest_agent_commands():
    with open(QMP_MAN, encoding="utf-8") as f:
        man = f.read().replace("\\-", "-")
    missing = [n for n in agent_commands()
               if n not in NOT_FORWARDED and not re.search(
                   r"^\.B Command +%s +\(Since" % re.escape(n), man, re.M)]
    assert not missing, "not in %s: %s" % (QMP_MAN, missing)


def test_system_manual_links_passthrough_page():
    """docs/system/guest-agent-passthrough.rst is in the system manual's
    table of contents and links the QMP reference's entries."""
    index = parse(SYSTEM_INDEX)
    assert "guest-agent-passthrough.html" in index.hrefs, sorted(index.hrefs)
    page = parse(PASSTHROUGH_PAGE)
    want = "../interop/qemu-qmp-ref.html#" + ANCHOR % "guest-exec"
    assert want in page.hrefs, sorted(h for h in page.hrefs if "qmp" in h)
