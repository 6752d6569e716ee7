"""The lab's errors and the exit codes they map to (documented in the README)."""

EXIT_MATCHED = 0
EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2
EXIT_COMPONENT = 3
EXIT_INTERRUPTED = 130


class LabError(Exception):
    exit_code = EXIT_COMPONENT


class BadInput(LabError):
    """Unknown scenario, fix or profile, or an invalid scenario or profile file."""

    exit_code = EXIT_BAD_INPUT


class RunStopped(Exception):
    """Raised inside a run that its caller asked to stop (an interrupted matrix)."""


class ComponentError(LabError):
    """A component (worker, app, proxy) could not start, or died during the run."""

    exit_code = EXIT_COMPONENT

    def __init__(self, component: str, problem: str, log_tail: str = "") -> None:
        self.component = component
        self.problem = problem
        self.log_tail = log_tail
        super().__init__(f"{component}: {problem}")
