"""The README, run: its shell and Python blocks, in order, against a fresh `make run` of its own.

What the README must keep to, to stay runnable (its editors' rules):

- Fenced blocks tagged `console`, `sh` or `python` are run, top to bottom, in one story. Other tags
  (`json`, none) are text and are not run; tags that would look runnable but are not (`bash`,
  `shell`, `py`…) are refused, so that no command is left out unnoticed.
- `<!-- not run: why -->` as the last line before a block's fence leaves that block out (make targets,
  installs, Docker, servers that run until stopped); the test lists each, as a skipped test.
- The server is `voxplane dev` as `make run` starts it, in a fresh directory where `.venv` is this
  checkout's virtual environment and `data/` is new: so `source .venv/bin/activate` and
  `cat data/dev-api-key` work as written. Its address replaces every `127.0.0.1:50051` of the blocks.
- All shell blocks share one bash session (variables, functions, `cd`, exports). It starts with no
  VOXPLANE_* variables and without the virtual environment on PATH: the README sets up what it uses.
- `console` blocks are transcripts. `$ ` starts a command (continued on the next line after a trailing
  `\\`); the lines up to the next `$ ` are what it prints, stdout and stderr together:
  - nothing shown: the command must succeed;
  - `ERROR:` (grpcurl's form): the command must fail with that `Code:`; `Message:` must match, with
    `…` standing for any text; `Details:` JSON, when shown, is compared as below;
  - JSON: each shown document is compared with what was printed: the same keys (an object holding
    `…` may leave keys out, a list holding `…` may leave items out at its end), the same values,
    but for refs, etags, page tokens, times and durations, which need only be there. A string that
    ends with `…` matches any string it starts;
  - other text: the same lines, blank lines aside; a line `…` stands for any lines, and a line
    ending with `…` for any line that starts so.
  A trailing comment that starts with `"` is the gist of the output: `$ cmd   # "state": "X"` is
  the command printing a JSON object with at least that field. Other comments are remarks.
- Refs, etags and page tokens the README shows in an output stand for the ones the server returned:
  later blocks (commands, outputs, Python) get the real ones where they show those values. So a ref
  shown once must not be shown for another resource.
- `sh` blocks are scripts: each line (with `\\` continuations) is a command that must succeed.
  Their output is not compared.
- `python` blocks run in one namespace, in this directory, with the VOXPLANE_* variables the shell
  session exported; a block passes when it raises nothing. Each must also paste into the
  interactive `python` as it is: no blank line inside an indented block, and a blank line after one.
"""

from __future__ import annotations

import code
import contextlib
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
VENV_BIN = Path(sys.executable).parent  # .venv/bin, of the interpreter running the tests
README_ADDRESS = "127.0.0.1:50051"
RUN = {"console", "sh", "python", "js"}
TEXT = {"", "json", "text", "csv"}
ELLIPSIS = "…"
LEARNED = {"ref", "number_ref", "workspace_ref", "etag", "next_page_token"}  # stand for the server's


def uncompared(key: str) -> bool:
    return key in LEARNED or key.endswith("_time") or key == "duration"


# --- the README's blocks -------------------------------------------------------------------------


@dataclass
class Block:
    line: int  # of the opening fence
    lang: str
    text: str
    not_run: str | None  # why, when marked `<!-- not run: why -->`

    @property
    def name(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->$")


def blocks(text: str) -> list[Block]:
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marked = _NOT_RUN.match(before)
        found.append(Block(start + 1, opening.group(1), "\n".join(body), marked.group(1) if marked else None))
        i += 1
    return found


ALL_BLOCKS = blocks(README.read_text(encoding="utf-8"))


@dataclass
class Step:
    line: int
    command: str
    shown: str  # what the README shows it printing
    gist: str = ""  # a trailing `# "field": value` comment


def _shell_scan(text: str) -> tuple[int, bool]:
    """Where a shell comment starts in `text` (-1 if none: a `#` outside quotes after a blank), and
    whether `text` ends inside a quote (the command goes on on the next line)."""
    quote = ""
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return i, False
    return -1, bool(quote)


def transcript(block: Block) -> list[Step]:
    lines = block.text.splitlines()
    steps: list[Step] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            assert not lines[i].strip(), f"README.md:{block.line + 1 + i}: output before any `$ ` command"
            i += 1
            continue
        first = i
        command = lines[i][2:]
        while (command.endswith("\\") or _shell_scan(command)[1]) and i + 1 < len(lines):
            i += 1
            command += "\n" + lines[i]
        gist = ""
        if (at := _shell_scan(command)[0]) >= 0:
            comment = command[at + 1 :].strip()
            command = command[:at].rstrip()
            gist = comment if comment.startswith('"') else ""
        shown: list[str] = []
        while i + 1 < len(lines) and not lines[i + 1].startswith("$ "):
            i += 1
            shown.append(lines[i])
        steps.append(Step(block.line + 1 + first, command, "\n".join(shown).strip("\n"), gist))
        i += 1
    return steps


def script(block: Block) -> list[Step]:
    steps: list[Step] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        first, command = i, [lines[i]]
        while command[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        i += 1
        text = "\n".join(command)
        if text.strip() and not text.strip().startswith("#"):
            steps.append(Step(block.line + 1 + first, text, ""))
    return steps


# --- comparing what was printed with what the README shows ---------------------------------------


def _marked(text: str) -> str:
    """The README's JSON with each `…` outside strings made JSON: a member `"…": true` in an object,
    an item `"…"` in a list."""
    out: list[str] = []
    stack: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
        if char == ELLIPSIS:
            out.append('"…": true' if stack and stack[-1] == "{" else '"…"')
        else:
            out.append(char)
    return "".join(out)


def json_documents(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    documents, at = [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return documents
        document, at = decoder.raw_decode(text, at)
        documents.append(document)


@dataclass
class Story:
    """What the run has learned: the server's refs for the README's, and what it skipped and printed."""

    learned: dict[str, str] = field(default_factory=dict)

    def substituted(self, text: str) -> str:
        for shown, actual in self.learned.items():
            text = text.replace(shown, actual)
        return text

    def learn(self, shown: str, actual: str, where: str) -> None:
        if shown == actual or ELLIPSIS in shown:
            return
        known = self.learned.setdefault(shown, actual)
        assert known == actual, f"{where}: the README shows {shown!r} for two different values ({known!r}, {actual!r})"

    def match(self, shown: Any, actual: Any, path: str, problems: list[str]) -> None:
        if isinstance(shown, dict):
            if not isinstance(actual, dict):
                problems.append(f"{path or '.'}: shown an object, got {actual!r}")
                return
            partial = shown.get(ELLIPSIS) is True
            keys = [k for k in shown if k != ELLIPSIS]
            if missing := [k for k in keys if k not in actual]:
                problems.append(f"{path or '.'}: shown {missing}, which the response lacks")
            if not partial and (extra := [k for k in actual if k not in shown]):
                problems.append(f"{path or '.'}: the response also has {extra} (show them, or `…`)")
            for key in keys:
                if key not in actual:
                    continue
                where = f"{path}.{key}" if path else key
                if uncompared(key):
                    if key in LEARNED and isinstance(shown[key], str) and isinstance(actual[key], str):
                        self.learn(shown[key], actual[key], where)
                    continue
                self.match(shown[key], actual[key], where, problems)
        elif isinstance(shown, list):
            if not isinstance(actual, list):
                problems.append(f"{path}: shown a list, got {actual!r}")
                return
            partial = ELLIPSIS in shown
            items = [item for item in shown if item != ELLIPSIS]
            if len(actual) < len(items) or (not partial and len(actual) != len(items)):
                problems.append(f"{path}: shown {len(items)} items, got {len(actual)}")
            for i, (want, got) in enumerate(zip(items, actual, strict=False)):
                self.match(want, got, f"{path}[{i}]", problems)
        elif isinstance(shown, str) and shown.endswith(ELLIPSIS):
            if not (isinstance(actual, str) and actual.startswith(shown[:-1])):
                problems.append(f"{path}: shown {shown!r}, got {actual!r}")
        elif shown != actual:
            problems.append(f"{path}: shown {shown!r}, got {actual!r}")

    def compare(self, step: Step, code: int, output: str) -> list[str]:
        """What is wrong with (exit code, output) against what the README shows; learns refs."""
        shown = self.substituted(step.shown)
        if step.gist and not shown:
            shown = "{ " + self.substituted(step.gist) + ", … }"
        if shown.startswith("ERROR:"):
            if code == 0:
                return ["shown failing, but it succeeded"]
            return self._compare_error(shown, output)
        if code != 0:
            return [f"failed (exit code {code})"]
        if not shown:
            return []
        if shown[0] in "{[":
            want = json_documents(_marked(shown))
            try:
                got = json_documents(output)
            except json.JSONDecodeError as error:
                return [f"printed no JSON ({error})"]
            problems: list[str] = []
            partial = want and want[-1] == ELLIPSIS
            want = [w for w in want if w != ELLIPSIS]
            if len(got) < len(want) or (not partial and len(got) != len(want)):
                problems.append(f"shown {len(want)} JSON documents, printed {len(got)}")
            for i, (w, g) in enumerate(zip(want, got, strict=False)):
                self.match(w, g, f"[{i}]" if len(want) > 1 else "", problems)
            return problems
        return _compare_text(shown.splitlines(), output.splitlines())

    def _compare_error(self, shown: str, output: str) -> list[str]:
        def fields(text: str) -> tuple[str, str, list[str]]:
            code = re.search(r"^\s*Code: (.*)$", text, re.M)
            message = re.search(r"^\s*Message: (.*)$", text, re.M)
            details = re.findall(r"^\s*\d+\)\s+(\{.*\})\s*$", text, re.M)
            return (code.group(1).strip() if code else "", message.group(1).strip() if message else "", details)

        want, got = fields(shown), fields(output)
        problems = []
        if want[0] != got[0]:
            problems.append(f"Code: shown {want[0]!r}, got {got[0]!r}")
        pattern = ".*".join(re.escape(part) for part in want[1].split(ELLIPSIS))
        if want[1] and not re.fullmatch(pattern, got[1]):
            problems.append(f"Message: shown {want[1]!r}, got {got[1]!r}")
        if want[2]:
            if len(want[2]) != len(got[2]):
                problems.append(f"Details: shown {len(want[2])}, got {len(got[2])}")
            for i, (w, g) in enumerate(zip(want[2], got[2], strict=False)):
                self.match(json.loads(_marked(w)), json.loads(g), f"Details {i + 1}", problems)
        return problems


def _compare_text(shown: list[str], printed: list[str]) -> list[str]:
    want = [line.strip() for line in shown if line.strip()]
    got = [line.strip() for line in printed if line.strip()]

    def matches(w: int, g: int) -> bool:
        if w == len(want):
            return g == len(got)
        if want[w] == ELLIPSIS:
            return any(matches(w + 1, k) for k in range(g, len(got) + 1))
        if g == len(got):
            return False
        line = want[w]
        same = got[g].startswith(line[:-1]) if line.endswith(ELLIPSIS) else got[g] == line
        return same and matches(w + 1, g + 1)

    return [] if matches(0, 0) else ["printed other lines than shown:\n" + "\n".join(shown)]


# --- running -------------------------------------------------------------------------------------


class Lines:
    """A pipe read line by line on a thread, so that reads can time out."""

    def __init__(self, pipe: Any):
        self.queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe: Any) -> None:
        for line in pipe:
            self.queue.put(line)
        self.queue.put(None)

    def next(self, deadline: float) -> str | None:
        try:
            return self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError from None


class Shell:
    """One bash session, as a reader's terminal: each command's exit code and output (2>&1)."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert self.process.stdin and self.process.stdout
        self.stdin = self.process.stdin
        self.lines = Lines(self.process.stdout)

    def run(self, command: str, timeout: float = 30) -> tuple[int, str]:
        marker = f"__readme_done_{uuid.uuid4().hex}__"
        self.stdin.write(f"{{\n{command}\n}} </dev/null 2>&1\nprintf '\\n{marker} %d\\n' $?\n")
        self.stdin.flush()
        deadline = time.monotonic() + timeout
        output: list[str] = []
        while True:
            try:
                line = self.lines.next(deadline)
            except TimeoutError:
                raise AssertionError(f"no end after {timeout} s; printed:\n{''.join(output)}") from None
            if line is None:
                raise AssertionError(f"the shell exited; printed:\n{''.join(output)}")
            if line.startswith(marker):
                return int(line.split()[1]), "".join(output).removesuffix("\n")
            output.append(line)

    def exported(self) -> dict[str, str]:
        code, printed = self.run(
            f"{sys.executable} -c 'import json, os; "
            "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(\"VOXPLANE_\")}))'"
        )
        assert code == 0, printed
        return dict(json.loads(printed))

    def close(self) -> None:
        self.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a command that never ended: the failure is reported already
            self.process.kill()
            self.process.wait()


def clean_environment() -> dict[str, str]:
    """A reader's fresh terminal: no VOXPLANE_* settings, the virtual environment not active."""
    path = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if Path(p) != VENV_BIN]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXPLANE_") and k != "VIRTUAL_ENV"}
    return {**env, "PATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1"}


class DevServer:
    """`voxplane dev`, as `make run` starts it, on a free port, in `directory` (so in its data/)."""

    def __init__(self, directory: Path, env: dict[str, str]):
        self.log = (directory / "server.log").open("w")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "voxplane"), "dev", "--port", "0"], cwd=directory, env=env, text=True,
            stdout=subprocess.PIPE, stderr=self.log,
        )
        self.lines = Lines(self.process.stdout)
        deadline = time.monotonic() + 30
        self.banner: list[str] = []
        while (line := self.lines.next(deadline)) is not None:
            self.banner.append(line)
            if serving := re.match(r"voxplane is serving .* on (\S+) ", line):
                self.address = serving.group(1)
                return
        raise AssertionError("voxplane dev did not start:\n" + (directory / "server.log").read_text())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class _Paste(code.InteractiveConsole):
    """The interactive interpreter a reader pastes a block into, compiling line by line, running nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def runcode(self, code: Any) -> None:
        pass

    def showsyntaxerror(self, *args: Any, **kwargs: Any) -> None:
        error = sys.exc_info()[1]
        self.errors.append(f"{type(error).__name__}: {error}")


def pasteable(block: Block) -> str:
    """Why the block does not paste into `python` (a blank line inside an indented block ends it
    there), at which README line; "" when it does."""
    console = _Paste()
    for number, line in enumerate([*block.text.splitlines(), ""], start=block.line + 1):
        console.push(line)
        if console.errors:
            return f"README.md:{number}: {console.errors[0]}"
    return ""


def run_python(block: Block, code: str, namespace: dict[str, Any]) -> str:
    printed = io.StringIO()
    source = "\n" * block.line + code  # tracebacks give README lines
    with contextlib.redirect_stdout(printed):
        try:
            exec(compile(source, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
        except Exception:  # noqa: BLE001 - reported as the block's failure
            raise AssertionError(
                f"{block.name} raised:\n{traceback.format_exc()}\nprinted:\n{printed.getvalue()}"
            ) from None
    return printed.getvalue()


NODE_CLIENT = README.parent / "clients" / "node"


def run_js(block: Block, code: str, cwd: Path, env: dict[str, str]) -> str:
    """A `js` block: an ES module run by node in the README's folder. It is written into the Node
    client's own folder, so that `import ... from "@voxplane/client"` resolves to the built client
    (a package can import itself by name), as it does in an app that installed it."""
    script_file = NODE_CLIENT / f".readme-{block.line}.mjs"
    script_file.write_text(code)
    try:
        done = subprocess.run(["node", str(script_file)], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=60)
    finally:
        script_file.unlink()
    if done.returncode != 0:
        raise AssertionError(f"{block.name} failed (exit code {done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.not_run], ids=lambda b: f"line {b.line}")
def test_readme_block_not_run(block: Block) -> None:
    pytest.skip(f"{block.name} not run: {block.not_run}")


def test_readme_blocks_are_runnable_or_text() -> None:
    unknown = [b.name for b in ALL_BLOCKS if b.lang not in RUN | TEXT]
    assert not unknown, f"tag code blocks console, sh, python or js (run), or json / none (text): {unknown}"
    assert sum(b.lang in RUN and not b.not_run for b in ALL_BLOCKS) >= 10


def test_readme_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".venv").symlink_to(VENV_BIN.parent, target_is_directory=True)
    env = clean_environment()
    server = DevServer(tmp_path, env)
    shell = Shell(tmp_path, env)
    story = Story()
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    monkeypatch.chdir(tmp_path)
    skipped = [f"{b.name}: {b.not_run}" for b in ALL_BLOCKS if b.not_run]
    print("not run:\n  " + "\n  ".join(skipped))
    try:
        for block in ALL_BLOCKS:
            if block.lang not in RUN or block.not_run:
                continue
            text = block.text.replace(README_ADDRESS, server.address)
            if block.lang == "python":
                for name in ("VOXPLANE_ENDPOINT", "VOXPLANE_API_KEY", "VOXPLANE_TLS"):
                    monkeypatch.delenv(name, raising=False)
                for name, value in shell.exported().items():
                    monkeypatch.setenv(name, value)
                unpasteable = pasteable(block)
                assert not unpasteable, f"{block.name} does not paste into `python`: {unpasteable}"
                print(f"--- {block.name}\n{run_python(block, story.substituted(text), namespace)}")
                continue
            if block.lang == "js":
                node_env = {**env, **shell.exported()}
                print(f"--- {block.name}\n{run_js(block, story.substituted(text), tmp_path, node_env)}")
                continue
            steps = transcript(Block(block.line, block.lang, text, None)) if block.lang == "console" else (
                script(Block(block.line, block.lang, text, None))
            )
            for step in steps:
                command = story.substituted(step.command)
                code, output = shell.run(command)
                problems = story.compare(step, code, output)
                assert not problems, (
                    f"README.md:{step.line}: `{command}` does not do what the README shows:\n  "
                    + "\n  ".join(problems)
                    + f"\nprinted (exit code {code}):\n{output}\nthe server's last log lines:\n"
                    + "".join((tmp_path / "server.log").read_text().splitlines(keepends=True)[-5:])
                )
    finally:
        shell.close()
        server.stop()
