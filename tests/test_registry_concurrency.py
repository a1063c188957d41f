"""Several processes registering into one SQLite registry at once never lose or duplicate a version."""

from __future__ import annotations

import multiprocessing
import time

from forecaster.registry.sqlite import SQLiteRegistry

WORKERS = 4
PER_WORKER = 30


def _worker(args: tuple[str, int, float]) -> list[int]:
    path, worker, start_at = args
    registry = SQLiteRegistry(path)
    time.sleep(max(0.0, start_at - time.time()))  # start together: maximal contention
    versions = []
    for n in range(PER_WORKER):
        version = registry.register("demand", f"s3://b/{worker}/{n}/model.tar.gz", metrics={"wape": n / 100})
        versions.append(version.version)
        if n % 5 == 0:
            registry.approve("demand", version.version)
    return versions


def test_concurrent_registrations_from_several_processes(tmp_path):
    path = str(tmp_path / "registry.db")
    SQLiteRegistry(path)  # create the schema once, like a real first use
    context = multiprocessing.get_context("spawn")
    with context.Pool(WORKERS) as pool:
        start_at = time.time() + 3.0
        results = pool.map(_worker, [(path, w, start_at) for w in range(WORKERS)])
    returned = sorted(v for versions in results for v in versions)
    total = WORKERS * PER_WORKER
    assert returned == list(range(1, total + 1))  # each process got distinct numbers, none skipped
    registry = SQLiteRegistry(path)
    stored = registry.list_versions("demand")
    assert [v.version for v in stored] == list(range(total, 0, -1))
    urls = {v.model_data_url for v in stored}
    assert urls == {f"s3://b/{w}/{n}/model.tar.gz" for w in range(WORKERS) for n in range(PER_WORKER)}
    # every worker's versions are increasing in its own order of registration
    assert all(versions == sorted(versions) for versions in results)
    assert len(registry.list_versions("demand", "Approved")) == WORKERS * 6
