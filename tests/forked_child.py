"""What the fork server's tests run as a child: `python -m tests.forked_child MODE [CODE]`."""

import os
import sys
import time
from pathlib import Path


def main() -> None:
    comm = Path("/proc/self/comm").read_text().strip()
    value = os.environ.get("FORKED_CHILD_VALUE")
    print(f"name={__name__} args={sys.argv[1:]} cwd={os.getcwd()} value={value} comm={comm}")
    mode = sys.argv[1]
    if mode == "exit":
        sys.exit(int(sys.argv[2]))
    if mode == "raise":
        raise RuntimeError("raised in the child")
    if mode == "message":
        sys.exit("a message for stderr")
    if mode == "stay":
        print("staying", flush=True)
        time.sleep(600)  # until the test signals it


if __name__ == "__main__":
    main()
