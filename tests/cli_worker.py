"""A long-lived `tradelane` CLI for the tests that drive a running system (`System.cli` and
`System.transfers`, tests/system.py).

Starting `python -m cli.main ...` costs about a second of CPU before the command does anything
(importing the CLI, SQLModel, Pydantic, the endpoint types): several seconds each on the 2-core
machine the suite runs on, where the system under test needs that CPU, and `wait_for` polls the
history many times a second. This process imports the CLI once, with the system's environment,
then runs each command the way `tradelane` does (`cli.main.main`: the private umask and home, then
the Typer app) through Click's test runner: the same commands, options, output and exit codes.

Protocol: a JSON list of arguments per line on stdin; one line back on stdout, `MARK` then JSON
{"code", "stdout", "stderr"}. Lines without the mark (anything else printing to the real stdout)
are skipped by the reader.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

MARK = "@@tradelane-cli-worker@@ "


class CliWorker:
    """The client: starts the worker with `env` on first use, one command at a time."""

    def __init__(self, env: dict[str, str], timeout: float = 120.0) -> None:
        self.env = env
        self.timeout = timeout
        self._proc: subprocess.Popen[str] | None = None
        self._env_started: dict[str, str] = {}
        self._lock = threading.Lock()

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        with self._lock:
            if self._proc is not None and self.env != self._env_started:
                # The system's environment changed since the worker started: a fresh worker sees
                # it, as a new `tradelane` process would.
                self._proc.kill()
                self._proc.wait()
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:  # ended (killed by the watchdog): its pipes go with it
                    for pipe in (self._proc.stdin, self._proc.stdout):
                        if pipe is not None:
                            pipe.close()
                self._env_started = dict(self.env)
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "tests.cli_worker"],
                    env=self.env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(list(args)) + "\n")
            proc.stdin.flush()
            # A command that hangs fails the test, as `subprocess.run(timeout=...)` would.
            watchdog = threading.Timer(self.timeout, proc.kill)
            watchdog.start()
            try:
                for line in proc.stdout:
                    if line.startswith(MARK):
                        reply = json.loads(line[len(MARK) :])
                        return subprocess.CompletedProcess(
                            ["tradelane", *args], reply["code"], reply["stdout"], reply["stderr"]
                        )
            finally:
                watchdog.cancel()
            code = proc.wait()
            raise RuntimeError(f"the CLI worker ended ({code}) running `tradelane {' '.join(args)}`")

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def main() -> None:
    import typer.testing
    from typer.testing import CliRunner

    from cli.main import app
    from cli.supervisor import apply_prefect_environment
    from core.config import get_settings
    from core.permissions import make_private

    # Prefect reads its settings once, when it is first imported; a real `tradelane` process imports
    # it after `flow run` has set the system's Prefect environment, but in this warm process another
    # command (one that loads the templates) may import it first. Set that environment up front.
    apply_prefect_environment(get_settings())

    # Typer builds the Click command from the app's functions on every invoke (most of a quick
    # command's time): build it once, as the one `tradelane` process of a real command does.
    command = typer.testing._get_command(app)
    typer.testing._get_command = lambda _app: command
    runner = CliRunner()
    out = sys.stdout
    for line in sys.stdin:
        args = json.loads(line)
        make_private(get_settings().home_dir)  # as cli.main.main does before every command
        result = runner.invoke(app, args, prog_name="python -m cli.main")
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            stderr += f"\n{type(result.exception).__name__}: {result.exception}"
        reply = {"code": result.exit_code, "stdout": result.stdout, "stderr": stderr}
        out.write(MARK + json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
