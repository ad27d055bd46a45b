"""The child's side of the sandbox: run a candidate over its tests and report return values.

The parent (:func:`~pytest_inferbudget.code.sandbox.run_candidate`) copies this file into the
child's working directory and runs it as ``python -I -S harness.py <fd>``: isolated mode and no
``site``, so it uses the standard library only and never imports ``pytest_inferbudget``, which is
not importable there. It is a module, not a string, so that linters, type checkers and coverage
(through the in-process unit tests) see it.

It runs before any candidate code and keeps its own references to what it needs (the candidate
may patch modules). It reports only *return values*, one JSON line per record on the pipe ``fd``:
the expected answers never leave the parent, which judges them
(:mod:`~pytest_inferbudget.code.protocol`). Records:

- ``{"kind": "header", "netns": ..., "pidns": ..., "pid": ..., "uid": ...}``, first, before
  candidate code (the namespaces as ``/proc/self/ns`` names them, "" without procfs);
- ``{"kind": "result", "i": i, "value": v}`` per test that returned a JSON value;
- ``{"kind": "unserializable", "i": i, "type": name}`` when the value is not JSON;
- ``{"kind": "error", "i": i, "error": name, "message": text}`` on an exception (``i = -1``:
  loading the source), after which nothing more runs;
- ``{"kind": "cpu_limit", "i": i}`` when the soft CPU limit's ``SIGXCPU`` arrives;
- ``{"kind": "done"}`` after the last test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback

_write = os.write
_exit = os._exit
_dumps = json.dumps
_mask = signal.pthread_sigmask
_XCPU = {signal.SIGXCPU}

INPUT_FILE = "input.json"
"""The job, written by the parent into the working directory: source, entry point, arguments."""

_fd = -1
"""The result pipe, set by :func:`main` (read by the CPU-limit handler)."""
_current = -1
"""The index of the test running now, for the CPU-limit handler."""


def emit(fd: int, text: str) -> None:
    """Write one record whole: the CPU-limit handler must not cut into a line."""
    view = memoryview(text.encode("ascii"))
    _mask(signal.SIG_BLOCK, _XCPU)
    try:
        while view:
            view = view[_write(fd, view) :]
    finally:
        _mask(signal.SIG_UNBLOCK, _XCPU)


def error_record(i: int, exc: BaseException) -> str:
    """The record line for an exception of test ``i``; never raises (the exception's ``str``
    is the candidate's code and may fail or need memory that is gone)."""
    if isinstance(exc, MemoryError):
        return f'{{"kind":"error","i":{i},"error":"MemoryError","message":""}}\n'
    try:
        message = str(exc)[:1000]
    except BaseException:
        message = ""
    name = type(exc).__name__
    return _dumps({"kind": "error", "i": i, "error": name, "message": message}) + "\n"


def _report_error(fd: int, i: int, exc: BaseException) -> None:
    emit(fd, error_record(i, exc))
    with contextlib.suppress(BaseException):
        traceback.print_exc()


def run_job(job: dict[str, object], fd: int) -> None:
    """Load ``job["source"]``, call ``job["entry_point"]`` on each of ``job["tests"]`` (lists of
    arguments) in order, and emit a record per test; returns after the first exception."""
    global _current
    source, entry, tests = job["source"], job["entry_point"], job["tests"]
    namespace: dict[str, object] = {"__name__": "__candidate__", "__builtins__": __builtins__}
    try:
        if not isinstance(source, str) or not isinstance(entry, str):
            raise TypeError("the job's source and entry point must be strings")
        if not isinstance(tests, list) or not all(isinstance(a, list) for a in tests):
            raise TypeError("the job's tests must be lists of arguments")
        exec(compile(source, "<candidate>", "exec"), namespace)
        fn = namespace[entry]
        if not callable(fn):
            raise TypeError(f"{entry} is not callable")
    except BaseException as exc:
        _report_error(fd, -1, exc)
        return
    for i, args in enumerate(tests):
        _current = i
        try:
            value = fn(*args)
        except BaseException as exc:
            _report_error(fd, i, exc)
            return
        try:
            text = _dumps(value)
        except BaseException:
            emit(
                fd,
                f'{{"kind":"unserializable","i":{i},"type":{_dumps(type(value).__name__)}}}\n',
            )
            continue
        emit(fd, f'{{"kind":"result","i":{i},"value":{text}}}\n')
    emit(fd, '{"kind":"done"}\n')


def _on_cpu_limit(signum: int, frame: object) -> None:
    # The soft RLIMIT_CPU was reached; the hard limit kills one second later regardless.
    emit(_fd, f'{{"kind":"cpu_limit","i":{_current}}}\n')
    _exit(0)


def _finish() -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    _exit(0)


def _namespace(kind: str) -> str:
    try:
        return os.readlink(f"/proc/self/ns/{kind}")
    except OSError:
        return ""


def main(argv: list[str]) -> None:
    """The child's entry point: ``argv[1]`` is the result pipe's descriptor."""
    global _fd
    _fd = fd = int(argv[1])
    # A launcher's job files, inherited like the pipe, are not the candidate's to keep.
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)
    signal.signal(signal.SIGXCPU, _on_cpu_limit)
    header = {
        "kind": "header",
        "netns": _namespace("net"),
        "pidns": _namespace("pid"),
        "pid": os.getpid(),
        "uid": os.getuid(),
    }
    emit(fd, _dumps(header) + "\n")
    with open(INPUT_FILE, "rb") as f:
        job = json.loads(f.read())
    # Leave the candidate an empty working directory: no job, and no copy of this file.
    os.unlink(INPUT_FILE)
    with contextlib.suppress(OSError):
        os.unlink(argv[0])
    sys.set_int_max_str_digits(0)
    run_job(job, fd)
    _finish()


if __name__ == "__main__":
    main(sys.argv)
