"""Chain-scale benchmark: a synthetic chain, partitioned by store group, through every step on one machine.

For each chain fraction (default 1/10, 1/3, 1: 30, 100, 300 stores × 1,000 items, 730 history days + 14
forecast days) the script runs, each stage in its own child process:

1. ``generate``: the chain written partition by partition (``history/group-01/part-0.parquet``; one
   partition = a group of stores), never held in one frame;
2. ``train``: training rows built partition by partition in worker processes, then LightGBM (the training job);
3. ``preprocess``: group totals (first pass) + feature and keys files per partition (workers);
4. ``transform``: the local batch transform (real ``forecaster serve``) over the per-partition feature files;
5. ``postprocess``: keys + predictions -> one forecast table + order proposals.

Wall time and peak RSS per stage: the stage process's own peak and the largest peak of any of its child processes
(partition workers, the server's workers): on one machine they run at the same time, so the sum of the process and
``workers`` × the child peak bounds the stage's memory. Prints a markdown table, writes ``bench/results/scale.json``
(or ``--out``).

    .venv/bin/python bench/scale.py --fractions 0.1               # 30 stores: ~22 M history rows
    .venv/bin/python bench/scale.py --fractions 0.1 0.333 1.0     # the full chain: ~220 M rows, hours on 2 cores
    .venv/bin/python bench/scale.py --smoke --workdir /tmp/s --out /tmp/s.json   # 3 stores x 6 items: runs?
    .venv/bin/python bench/scale.py --fractions 0.1 --hosts 1,2   # the training job on 1 and on 2 hosts

``--hosts 1,2``: the train stage runs once per host count, N > 1 as a training job of N hosts on this machine
(``forecaster.container.local_job.run_hosts_job``: N processes on 127.0.0.1, LightGBM's network learner); each
host's wall time, row-build time (first pass + its rows) and peak RSS come from its ``host_report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from pathlib import Path

from _common import RESULTS_DIR, gib, machine_info, markdown_table, peak_rss_bytes, run_child

STORES, ITEMS, DAYS, HORIZON = 300, 1000, 730, 14
STAGES = ("generate", "train", "preprocess", "transform", "postprocess")
#: fewer LightGBM rounds and sampled rows than the defaults: the benchmark measures scaling, not accuracy
TRAIN_PARAMS = {"horizon": HORIZON, "num_boost_round": 100, "quantile_num_boost_round": 60, "max_train_rows": 500_000}
#: ``--smoke``: 3 stores (2 partitions: the workers run) × 6 items × 120 days, a few rounds; checks the script runs
SMOKE = {"fractions": [0.01], "items": 6, "days": 120, "group": 2}
SMOKE_ROUNDS = {"num_boost_round": 10, "quantile_num_boost_round": 10}


def _children_peak() -> int:
    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)


def _generate(work: Path, stores: int, group: int, seed: int, items: int, days: int) -> dict:
    import pandas as pd

    from forecaster.io import write_table
    from forecaster.synth import SYNTH_SPEC, generate

    spec = SYNTH_SPEC
    rows = 0
    for g, first in enumerate(range(0, stores, group)):
        count = min(group, stores - first)
        frame = generate(stores=count, items=items, days=days + HORIZON, seed=seed + g, start="2024-01-01")
        frame["store_id"] = frame["store_id"].map({f"S{s + 1:03d}": f"S{first + s + 1:03d}" for s in range(count)})
        cut = frame["date"].min() + pd.Timedelta(days=days - 1)
        name = f"group-{g + 1:02d}"  # a group of stores: no Hive key (the rows carry store_id)
        write_table(frame[frame["date"] <= cut], work / "history" / name / "part-0.parquet")
        future_columns = [*spec["keys"], spec["date"], *spec["known_future"]]
        write_table(frame.loc[frame["date"] > cut, future_columns], work / "future" / name / "part-0.parquet")
        rows += int((frame["date"] <= cut).sum())
        del frame
    return {"history_rows": rows}


def _train_on_hosts(work: Path, hosts: int, train_params: dict) -> dict:
    """The training job on ``hosts`` processes of this machine; the job's wall time and each host's figures."""
    from forecaster.container.hosts import HOST_REPORT_FILE
    from forecaster.container.layout import ContainerTree
    from forecaster.container.local_job import run_hosts_job
    from forecaster.io import read_json

    jobs = work / f"hosts-{hosts}"
    shutil.rmtree(jobs, ignore_errors=True)
    params = {k: str(v) for k, v in train_params.items()}
    results = run_hosts_job(jobs, params, {"train": work / "history"}, hosts)
    per_host = []
    for host, result in results.items():
        tree = ContainerTree(jobs / host)
        if result.returncode != 0:
            raise RuntimeError(f"{host} failed: {result.stderr[-3000:]}")
        report = read_json(tree.output_dir / "data" / HOST_REPORT_FILE)
        phases = report["phase_seconds"]
        per_host.append({
            "host": host, "row_build_s": phases["summary"] + phases["features"], "phase_seconds": phases,
            "row_build_own_s": report["row_build_own_s"], "wait_seconds": report.get("wait_seconds", {}),
            "training_rows": report["training_rows"], "partitions": len(report["partitions"]),
            "peak_rss_bytes": report["peak_rss_bytes"], "child_peak_rss_bytes": report["children_peak_rss_bytes"],
        })  # fmt: skip
    first = ContainerTree(jobs / next(iter(results)))
    if not (work / "model").exists():  # the later stages read the model
        shutil.copytree(first.model_dir, work / "model")
    wape = read_json(first.output_dir / "data" / "validation_metrics.json")["wape"]
    return {"row_build_s": max(h["row_build_s"] for h in per_host), "wape": wape, "per_host": per_host}


def _stage(name: str, work: Path, workers: int, train_params: dict, hosts: int = 1) -> dict:
    from forecaster.config import TrainConfig
    from forecaster.io import read_json
    from forecaster.spec import DatasetSpec
    from forecaster.synth import SYNTH_SPEC

    spec = DatasetSpec.from_dict(SYNTH_SPEC)
    if name == "train" and hosts > 1:
        return _train_on_hosts(work, hosts, train_params)
    if name == "train":
        from forecaster.training import fit_artifact

        config = TrainConfig.from_hyperparameters({k: str(v) for k, v in train_params.items()})
        fit_artifact(work / "history", spec, config, work / "model", workers=workers)
        metadata = read_json(work / "model" / "metadata.json")
        phases = metadata["phase_seconds"]  # summary = the first pass, features = the sampled rows (second pass)
        return {
            "row_build_s": phases["summary"] + phases["features"], "wape": metadata["validation_metrics"]["wape"],
            "phase_seconds": phases,
        }  # fmt: skip
    if name == "preprocess":
        from forecaster.partitioned import preprocess

        parts = preprocess(
            work / "model",
            work / "history",
            work / "future",
            work / "features",
            keys_dir=work / "keys",
            workers=workers,
        )
        return {"partitions": len(parts)}
    if name == "transform":
        from forecaster.serving.transform import run_transform

        written = run_transform(
            work / "model", work / "features", work / "predictions", workers=workers, concurrency=workers
        )
        return {"files": len(written)}
    if name == "postprocess":
        from forecaster.forecasting import postprocess
        from forecaster.io import read_table

        out = postprocess(work / "keys", work / "predictions", work / "forecasts.parquet")
        return {"forecast_rows": len(read_table(out))}
    raise ValueError(name)


def child(args: argparse.Namespace) -> None:
    """One stage in this process; its result (+ timing, peaks) as JSON into ``--result``."""
    started = time.perf_counter()
    if args.stage == "generate":
        extra = _generate(args.work, args.stores, args.group, args.seed, args.items, args.days)
    else:
        extra = _stage(args.stage, args.work, args.workers, _train_params(args), args.train_hosts)
    result = {
        "stage": args.stage,
        "hosts": args.train_hosts if args.stage == "train" else 1,
        "seconds": time.perf_counter() - started,
        "peak_rss_bytes": peak_rss_bytes(),
        "child_peak_rss_bytes": _children_peak(),
        **extra,
    }
    Path(args.result).write_text(json.dumps(result))


def _train_params(args: argparse.Namespace) -> dict:
    return {**TRAIN_PARAMS, **(SMOKE_ROUNDS if args.smoke else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1 / 3, 1.0])
    parser.add_argument("--group", type=int, default=10, help="stores per partition (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/forecaster-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the generated data and outputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "scale.json")
    parser.add_argument("--items", type=int, default=ITEMS, help=f"items per store (default {ITEMS:,})")
    parser.add_argument("--days", type=int, default=DAYS, help=f"history days (default {DAYS})")
    parser.add_argument("--smoke", action="store_true", help="3 stores x 6 items x 120 days: checks the script runs")
    parser.add_argument(
        "--hosts", default="1", help="host counts of the train stage, e.g. 1,2 (N > 1: N processes on 127.0.0.1)"
    )
    # child mode
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stores", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--train-hosts", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.stage:
        child(args)
        return
    rows = []
    host_counts = [int(h) for h in str(args.hosts).split(",")]
    for fraction in args.fractions:
        stores = max(1, round(STORES * fraction))
        work = args.workdir / f"stores-{stores}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        runs = [(stage, h) for stage in STAGES for h in (host_counts if stage == "train" else [1])]
        for stage, hosts in runs:
            result_file = work / f".{stage}-{hosts}.json"
            run_child(
                [
                    __file__, "--stage", stage, "--work", str(work), "--stores", str(stores), "--group",
                    str(args.group), "--workers", str(args.workers), "--seed", str(args.seed), "--result",
                    str(result_file), "--items", str(args.items), "--days", str(args.days),
                    "--train-hosts", str(hosts), *(["--smoke"] if args.smoke else []),
                ]
            )  # fmt: skip
            result = json.loads(result_file.read_text())
            row = {"stores": stores, "series": stores * args.items, **result}
            row["peak_gib"] = gib(row["peak_rss_bytes"])
            row["child_peak_gib"] = gib(row["child_peak_rss_bytes"])
            rows.append(row)
            print(json.dumps(row), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            summary = {"machine": machine_info(), "train_params": _train_params(args), "rows": rows}
            args.out.write_text(json.dumps({**summary, "hosts": _hosts_table(rows)}, indent=2))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    columns = [
        ("stores", "stores", ""),
        ("series", "series", ","),
        ("stage", "stage", ""),
        ("hosts", "hosts", ""),
        ("seconds", "wall s", ".0f"),
        ("peak_gib", "peak RSS GiB (process)", ".2f"),
        ("child_peak_gib", "largest child GiB", ".2f"),
    ]
    print(markdown_table(rows, columns))
    hosts_rows = _hosts_table(rows)
    if len(host_counts) > 1:
        host_columns = [
            ("stores", "stores", ""), ("hosts", "hosts", ""), ("host", "host", ""),
            ("job_s", "job wall s", ".0f"), ("speed_up", "speed-up", ".2f"), ("row_build_s", "row build s", ".1f"),
            ("row_build_own_s", "own row build s", ".1f"), ("fit_s", "fit + refit s", ".1f"),
            ("peak_gib", "peak RSS GiB (host)", ".2f"), ("child_peak_gib", "largest child GiB", ".2f"),
            ("wape", "WAPE", ".4f"),
        ]  # fmt: skip
        print(markdown_table(hosts_rows, host_columns))
    print(f"machine: {machine_info()}; workers: {args.workers}; cpus: {os.cpu_count()}")


def _hosts_table(rows: list[dict]) -> list[dict]:
    """The train stage per host count and host: job wall time, speed-up over one host, row build, fit, peak RSS."""
    trains = [row for row in rows if row["stage"] == "train"]
    out = []
    for row in trains:
        single = next((r for r in trains if r["stores"] == row["stores"] and r["hosts"] == 1), None)
        speed_up = single["seconds"] / row["seconds"] if single else None
        hosts = row.get("per_host") or [{
            "host": "algo-1", "row_build_s": row["row_build_s"], "row_build_own_s": row["row_build_s"],
            "peak_rss_bytes": row["peak_rss_bytes"], "child_peak_rss_bytes": row["child_peak_rss_bytes"],
            "phase_seconds": row.get("phase_seconds", {}),
        }]  # fmt: skip
        for host in hosts:
            phases = host.get("phase_seconds", {})
            out.append({
                "stores": row["stores"], "hosts": row["hosts"], "host": host["host"], "job_s": row["seconds"],
                "speed_up": speed_up, "row_build_s": host["row_build_s"], "row_build_own_s": host["row_build_own_s"],
                "fit_s": phases.get("fit", 0.0) + phases.get("refit", 0.0), "peak_gib": gib(host["peak_rss_bytes"]),
                "child_peak_gib": gib(host["child_peak_rss_bytes"]),
                "wape": row.get("wape"),
            })  # fmt: skip
    return out


if __name__ == "__main__":
    main()
