"""What a run did to Redis's memory: used_memory over time, and which key patterns grew.

The same figures a user gets from `redis-cli INFO memory` and a `--scan` of the keys; the run
report prints those commands with the run's port so anyone can look for themselves.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.stacks.brokers import default_port, host_port

SAMPLE_EVERY = 0.1  # seconds
# Parts of a key that differ per task or per worker: a task id, a hostname, a number.
_VARYING = [
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    re.compile(r"lab-worker-\d+@[^.\s]+"),
    re.compile(r"(?<=lab\.)[^.]+(?=\.)"),  # lab.<run id>.<stack>: one stack's queue
]


def key_pattern(key: str) -> str:
    """`celery-task-meta-<uuid>` -> `celery-task-meta-*`: keys grouped by what they are."""
    for pattern in _VARYING:
        key = pattern.sub("*", key)
    return key


@dataclass
class KeyGroup:
    pattern: str
    count: int = 0
    bytes: int = 0  # MEMORY USAGE summed over the keys


def scan_key_groups(client: Any, sample_limit: int = 20_000) -> list[KeyGroup]:
    """Every key (up to sample_limit) by pattern, with counts and MEMORY USAGE, largest first."""
    groups: dict[str, KeyGroup] = {}
    keys = []
    for n, key in enumerate(client.scan_iter(count=1000)):
        if n >= sample_limit:
            break
        keys.append(key)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key)
    sizes = pipe.execute() if keys else []
    for key, size in zip(keys, sizes, strict=True):
        name = key_pattern(key.decode("utf-8", errors="replace"))
        group = groups.setdefault(name, KeyGroup(name))
        group.count += 1
        group.bytes += size or 0
    return sorted(groups.values(), key=lambda g: (-g.bytes, g.pattern))


@dataclass
class MemorySummary:
    url: str
    maxmemory: int  # bytes; 0: no cap
    policy: str
    baseline: int  # used_memory when the run's client started
    peak: int
    final: int
    # used_memory_dataset (the keys, not client buffers, which come and go): what "flat" means.
    dataset_baseline: int
    dataset_final: int
    samples: int
    refused_writes: int  # rejected_calls / OOM errors Redis counted
    keys_before: list[KeyGroup] = field(default_factory=list)
    keys_after: list[KeyGroup] = field(default_factory=list)

    @property
    def headroom(self) -> int:
        return max(self.maxmemory - self.baseline, 0)

    @property
    def dataset_growth(self) -> int:
        return self.dataset_final - self.dataset_baseline

    @property
    def key_bytes_growth(self) -> int:
        """MEMORY USAGE of every key, after minus before: what the keys themselves hold."""
        return sum(g.bytes for g in self.keys_after) - sum(g.bytes for g in self.keys_before)

    @property
    def flat(self) -> bool:
        """Redis never refused a write, and the keys ended within a tenth of the
        headroom (at least 64 KiB; 256 KiB without a cap) of where it started."""
        allowed = max(self.headroom // 10, 64 * 1024) if self.maxmemory else 256 * 1024
        return self.refused_writes == 0 and self.key_bytes_growth <= allowed

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["headroom"] = self.headroom
        data["dataset_growth"] = self.dataset_growth
        data["key_bytes_growth"] = self.key_bytes_growth
        data["flat"] = self.flat
        return data


class RedisMemoryWatch:
    """Samples INFO memory in a thread into redis-memory.jsonl while a run goes on."""

    def __init__(self, url: str, path: Path) -> None:
        import redis

        self.url = url
        self.path = path
        self.client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples: list[dict[str, Any]] = []
        self.keys_before: list[KeyGroup] = []
        self.baseline = 0
        self.dataset_baseline = 0

    def start(self) -> None:
        self.keys_before = scan_key_groups(self.client)
        first = self._sample()
        self.baseline, self.dataset_baseline = first["used_memory"], first["used_memory_dataset"]
        self._thread = threading.Thread(target=self._run, name="redis-memory", daemon=True)
        self._thread.start()

    def _sample(self) -> dict[str, Any]:
        info = self.client.info("memory")
        sample = {
            "time": time.time(),
            "used_memory": info["used_memory"],
            "used_memory_dataset": info.get("used_memory_dataset", info["used_memory"]),
            "maxmemory": info.get("maxmemory", 0),
            "keys": self.client.dbsize(),
            "rejected_calls": _oom_errors(self.client),
        }
        self.samples.append(sample)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(sample) + "\n")
        return sample

    def refused_any(self) -> bool:
        """Has Redis refused a write (out of memory) since it started?"""
        try:
            return _oom_errors(self.client) > 0
        except Exception:  # noqa: BLE001 - Redis gone: the supervisor reports it
            return False

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            try:
                self._sample()
            except Exception:  # noqa: BLE001 - Redis gone: the supervisor reports it
                return

    def stop(self) -> MemorySummary | None:
        """Stop sampling; the summary, or None when Redis cannot be read any more (or it was
        stopped before: the run's clean-up stops it again on every way out)."""
        if self._stop.is_set():
            return None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            final = self._sample()
            keys_after = scan_key_groups(self.client)
            config = self.client.config_get("maxmemory-policy")
        except Exception:  # noqa: BLE001
            return None
        finally:
            self.client.close()
        used = [s["used_memory"] for s in self.samples]
        return MemorySummary(
            url=self.url,
            maxmemory=final["maxmemory"],
            policy=config.get("maxmemory-policy", "?"),
            baseline=self.baseline,
            peak=max(used),
            final=final["used_memory"],
            dataset_baseline=self.dataset_baseline,
            dataset_final=final["used_memory_dataset"],
            samples=len(self.samples),
            refused_writes=final["rejected_calls"],
            keys_before=self.keys_before,
            keys_after=keys_after,
        )


def _oom_errors(client: Any) -> int:
    """OOM errors Redis has counted (INFO errorstats, Redis 6.2+; 0 where it has none)."""
    try:
        errors = client.info("errorstats")
    except Exception:  # noqa: BLE001 - an older Redis: no count to give
        return 0
    oom = errors.get("errorstat_OOM", {})
    return int(oom.get("count", 0)) if isinstance(oom, dict) else 0


def redis_cli_commands(url: str) -> list[str]:
    """What a user would type to see the same figures."""
    host, port = host_port(url, default_port("redis"))
    target = f"-h {host} -p {port}"
    return [
        f"redis-cli {target} INFO memory",
        f"redis-cli {target} CONFIG GET maxmemory*",
        f"redis-cli {target} DBSIZE",
        f"redis-cli {target} --scan --pattern 'celery-task-meta-*' | head",
        f"redis-cli {target} MEMORY USAGE celery-task-meta-<task id>",
        f"redis-cli {target} TTL celery-task-meta-<task id>",
        f"redis-cli {target} --memkeys",
        f"redis-cli {target} INFO errorstats",
    ]
