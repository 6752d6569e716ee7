"""`python -m lab`: the CLI (lab.cli)."""

from lab.cli import main

try:
    main()
finally:
    # By here the lab has handled every Ctrl-C (click turns one it did not into exit 1). But
    # CPython remembers a KeyboardInterrupt raised inside code that exec() ran from a string (a
    # dataclass or named tuple being defined when the Ctrl-C landed), even once it is caught,
    # and under `python -m` ends the process by SIGINT after its exit: the 130 the lab chose
    # became -2 (seen once in `lab verify`). An exec() of a string that ends normally forgets it.
    exec("")
