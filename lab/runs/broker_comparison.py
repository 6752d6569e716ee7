"""The same matrix on several brokers (`lab matrix --brokers`): which cells had the same
outcome on all of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.runs.lifecycle import new_run_dir
from lab.runs.matrix import MatrixResult, Progress, run_matrix
from lab.runs.repro import write_json


@dataclass
class BrokerComparison:
    """The same matrix on several brokers: which cells had the same outcome on all of them."""

    run_dir: Path
    results: dict[str, MatrixResult]

    @property
    def common_cells(self) -> list[tuple[str, str]]:
        """Cells run on every broker (a scenario bound to one broker is not compared)."""
        keys = [set(r.last) for r in self.results.values()]
        return sorted(set.intersection(*keys)) if keys else []

    @property
    def differences(self) -> dict[tuple[str, str], dict[str, str]]:
        out = {}
        for cell in self.common_cells:
            seen = {broker: r.last[cell].observed for broker, r in self.results.items()}
            if len(set(seen.values())) > 1:
                out[cell] = seen
        return out

    @property
    def cached_poll_cells(self) -> list[tuple[str, str]]:
        """Common cells whose status went through a caching proxy: the story's bug."""
        first = next(iter(self.results.values()))
        return [cell for cell in self.common_cells if first.last[cell].polls["from_cache"] > 0]

    @property
    def ok(self) -> bool:
        return not self.differences and all(r.ok for r in self.results.values())

    def to_json(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "brokers": list(self.results),
            "ok": self.ok,
            "common_cells": len(self.common_cells),
            "cached_poll_cells": len(self.cached_poll_cells),
            "differences": {f"{s}/{f}": seen for (s, f), seen in self.differences.items()},
            "matrices": {broker: r.to_json() for broker, r in self.results.items()},
        }

    def markdown(self) -> str:
        brokers = ", ".join(self.results)
        lines = [
            f"# The same matrix on {brokers}",
            "",
            f"{len(self.common_cells)} cells ran on every broker; "
            f"{len(self.common_cells) - len(self.differences)} had the same outcome on all. "
            f"{len(self.cached_poll_cells)} of them had polls answered by a proxy's cache.",
            "",
        ]
        if self.differences:
            lines += ["| scenario | fix | " + " | ".join(self.results) + " |"]
            lines += ["| --- | --- | " + " | ".join("---" for _ in self.results) + " |"]
            for (s, f), seen in self.differences.items():
                lines.append(f"| {s} | {f} | " + " | ".join(seen.values()) + " |")
        else:
            lines.append("Changing the broker changed no outcome: it cannot fix a cached poll.")
        lines += ["", "Each broker's matrix: " + ", ".join(f"{b}/matrix.md" for b in self.results)]
        return "\n".join(lines) + "\n"


def run_broker_comparison(
    brokers: list[str], runs_root: Path, progress: Progress, **matrix_args
) -> BrokerComparison:
    """One matrix per broker, one after the other (each has the machine to itself)."""
    run_dir = new_run_dir(runs_root, "brokers")
    comparison = BrokerComparison(run_dir, {})
    for broker in brokers:
        progress(f"--- the matrix on {broker} ---")
        comparison.results[broker] = run_matrix(
            runs_root=runs_root,
            progress=progress,
            broker=broker,
            run_dir=run_dir / broker,
            **matrix_args,
        )
    write_json(run_dir / "brokers.json", comparison.to_json())
    (run_dir / "brokers.md").write_text(comparison.markdown(), "utf-8")
    return comparison
