"""cli/allocator.py: with glibc's thresholds set as `tradelane up` and `tradelane serve` set them,
buffers of a few hundred KiB allocated and freed in turn (an upload's reads) reuse the same heap
pages instead of taking fresh ones from the kernel each time. Counted in page faults, in a child
process each: mallopt changes the whole process."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

from cli.allocator import tune_allocator
from cli.roles import tune_interpreter

CHURN = """
import json, resource, sys
if sys.argv[1] == "tuned":
    from cli.roles import tune_interpreter
    tune_interpreter()
def churn():
    for _ in range(400):
        held = [bytes(256 * 1024) for _ in range(6)]  # an upload's chunks in flight, then freed
        del held
churn()  # warm: the first round maps what it needs either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHURN, mode], capture_output=True, text=True, timeout=120, check=True
    )
    return int(json.loads(done.stdout))


def test_freed_buffers_are_reused_not_handed_back() -> None:
    default, tuned = faults("default"), faults("tuned")
    # 400 rounds of 6 x 256 KiB: 153,600 pages if every buffer took fresh ones.
    assert default > 20_000, default  # glibc's defaults: the heap top goes back and forth
    assert tuned < 2_000, tuned


def test_the_thresholds_are_set_where_glibc_is_the_allocator() -> None:
    assert platform.libc_ver()[0] == "glibc"  # this project's machines and image (Debian)
    tune_interpreter()
    assert tune_allocator()  # set, and asking again is harmless
