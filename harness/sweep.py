"""Sweeps: an experiment file (YAML) of models × tasks × extensions × runners, each cell an ordinary run directory
under one sweep directory (so `longctx report SWEEP_DIR` shows it all).

    out: runs/sweep
    models: [smollm2]
    tasks: [passkey, {name: niah-multikey, max_new_tokens: 16}]
    extensions: [none, {name: yarn, params: {factor: 2}}]
    runners: [hf, {name: kernel, options: {impl: cpu}}]
    lengths: [2k, 4k, 8k]
    depths: [0.1, 0.5, 0.9]
    samples: 1
    seed: 0
    haystack: noise            # haystack_file: PATH with haystack: essay

A `search:` mapping instead of lengths/depths/samples makes every cell an effective-length search (`longctx search`,
harness/search.py) rather than a grid: `search: {min: 2k, max: 32k, threshold: 0.856, resolution: 1.19,
max_samples: 48}` (min and max required). Search cells run locally or as shards; the Ray executor runs grids.

The file is loaded safely; unknown keys, wrong types and bad values are one-line errors naming the key path
(`extensions[1].params.factor`). Every cell is prepared (names, parameters, hosting, prompts of the shortest
length, output directories) before the first one runs, so a mistake in the last cell costs nothing.
`--shard i/n` runs cells i, i + n, i + 2n ... of the fixed cell order, for batch schedulers; shards write disjoint
run directories, so their outputs merge by copying.
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.config import settings_of
from harness.errors import UserError

# grid keys a task takes if it has them
SHARED = ("samples", "seed", "haystack", "haystack_file", "shared_haystack", "prompt_format", "answer_prefix",
          "qa_file", "thinking_tokens", "style")
TOP = {"out": str, "models": list, "tasks": list, "extensions": list, "runners": list, "lengths": list,
       "depths": list, "samples": int, "seed": int, "haystack": str, "haystack_file": str, "shared_haystack": bool,
       "prompt_format": str, "answer_prefix": bool, "qa_file": str, "thinking_tokens": int, "style": str,
       "search": dict, "diagnostics": str, "ablate_heads": str, "heads_from": str}
SEARCH_KEYS = {"min": (str, int), "max": (str, int), "threshold": (float, int), "resolution": (float, int),
               "max_samples": (int,)}
ITEM_KEYS = {"extensions": {"name", "params"}, "runners": {"name", "options"}}
REQUIRED = ("models", "tasks")


@dataclass(frozen=True)
class Cell:
    index: int
    experiment: Any  # harness.experiment.Experiment
    search: Any = None  # harness.search.SearchConfig: an effective-length search instead of the grid


def _err(path: str, msg: str) -> UserError:
    return UserError(f"{path}: {msg}")


def _items(doc: dict, key: str, where: str) -> list[dict]:
    """A list of names or {name: ..., ...} mappings → mappings, each checked against its allowed keys."""
    out = []
    for i, item in enumerate(doc.get(key, [])):
        path = f"{where}{key}[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise _err(path, f"expected a name or a mapping, got {type(item).__name__}")
        unknown = sorted(set(item) - ITEM_KEYS[key]) if key in ITEM_KEYS else []  # a task's: its config's settings
        if unknown:
            raise _err(f"{path}.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(ITEM_KEYS[key]))}")
        if not isinstance(item.get("name"), str):
            raise _err(f"{path}.name", "a name is required")
        for sub in ("params", "options"):
            if sub in item and not isinstance(item[sub], dict):
                raise _err(f"{path}.{sub}", "expected a mapping of KEY: VALUE")
        out.append(item)
    return out


def _value(path: str, v):
    """A YAML scalar as a parameter value: finite numbers only; a list only of numbers (longrope's factors)."""
    import math

    if isinstance(v, float) and not math.isfinite(v):
        raise _err(path, f"numbers must be finite, got {v}")
    if isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        for i, x in enumerate(v):
            _value(f"{path}[{i}]", x)
        return tuple(v)
    if isinstance(v, (dict, list)):
        raise _err(path, "expected a single value or a list of numbers")
    return v


def load(path: str, out: str | None = None) -> tuple[Path, list[Cell]]:
    """Parse and check an experiment file; returns the sweep directory and its cells (not yet prepared)."""
    import yaml

    from harness.config import parse_depths, parse_length
    from harness.experiment import Experiment

    where = f"{path}: "
    try:
        doc = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_unique_key_loader())
    except FileNotFoundError:
        raise UserError(f"no such experiment file: {path}") from None
    except DuplicateKey as e:
        raise UserError(f"{path}: {e}") from None
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()
        raise UserError(f"{path} is not valid YAML ({' '.join(first[:2])})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping of keys (out, models, tasks, ...) at the top")
    for key, value in doc.items():
        if key not in TOP:
            from harness.errors import unknown_name

            raise UserError(f"{where}{unknown_name('key', str(key), list(TOP))}")
        if not isinstance(value, TOP[key]) or (TOP[key] is int and isinstance(value, bool)):
            raise _err(f"{where}{key}", f"expected {TOP[key].__name__}, got {type(value).__name__}")
    for key in REQUIRED:
        if not doc.get(key):
            raise _err(f"{where}{key}", "required and non-empty")
    sweep_dir = Path(out or doc.get("out") or "")
    if not str(sweep_dir) or str(sweep_dir) == ".":
        raise _err(f"{where}out", "give the sweep directory here or with --out")
    from harness.records import RESULTS, RUN

    if (sweep_dir / RUN).exists() or (sweep_dir / RESULTS).exists():
        raise _err(f"{where}out", f"{sweep_dir} is a run directory, not a sweep's; give the sweep a directory of "
                   "its own")
    search = _search_config(doc, where)
    if search is None and not doc.get("lengths"):
        raise _err(f"{where}lengths", "required and non-empty (or give a search: mapping)")
    lengths = [search.low, search.high] if search else []
    for i, n in enumerate(doc.get("lengths", [])):
        try:
            lengths.append(parse_length(str(n)))
        except UserError as e:
            raise _err(f"{where}lengths[{i}]", str(e)) from None
    try:
        depths = tuple(parse_depths(",".join(str(d) for d in doc.get("depths", [0.5]))))
    except UserError as e:
        raise _err(f"{where}depths", str(e)) from None
    for i, m in enumerate(doc["models"]):
        if not isinstance(m, str):
            raise _err(f"{where}models[{i}]", "expected a model name or path")
    tasks = _items(doc, "tasks", where)
    extensions = _items(doc, "extensions", where) or [{"name": "none"}]
    runners = _items(doc, "runners", where) or [{"name": "hf"}]
    shared = {"lengths": tuple(sorted(set(lengths))), "depths": depths if "depths" in doc else None,
              **{k: doc[k] for k in SHARED if k in doc}}
    configs = [_task_config(task, shared, search, f"{where}tasks[{ti}]") for ti, task in enumerate(tasks)]
    for key in [k for k in ("depths", *SHARED) if k in doc]:
        if not any(key in settings_of(type(tc)) for tc in configs):
            raise _err(f"{where}{key}", "no task of this file has this setting")
    cells = []
    for model in doc["models"]:
        for ti, task in enumerate(tasks):
            for ei, ext in enumerate(extensions):
                for ri, runner in enumerate(runners):
                    params = {k: _value(f"{where}extensions[{ei}].params.{k}", v)
                              for k, v in ext.get("params", {}).items()}
                    options = {k: _value(f"{where}runners[{ri}].options.{k}", v)
                               for k, v in runner.get("options", {}).items()}
                    tc = configs[ti]
                    name = "-".join([task["name"], re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name),
                                     _slug(ext["name"], params), _slug(runner["name"], options)])
                    exp = Experiment(task=task["name"], task_config=tc, model=model, extension=ext["name"],
                                     extension_params=params, runner=runner["name"], runner_options=options,
                                     out=str(sweep_dir / name), diagnostics=doc.get("diagnostics"),
                                     ablate_heads=doc.get("ablate_heads"), heads_from=doc.get("heads_from"))
                    if search is not None:
                        from harness.search import search_experiment

                        exp = search_experiment(exp, search)
                    cells.append(Cell(len(cells), exp, search))
    seen: set[str] = set()
    for c in cells:
        if c.experiment.out in seen:
            raise UserError(f"{path}: two cells would share the run directory {Path(c.experiment.out).name} "
                            "(a model, task, extension or runner listed twice)")
        seen.add(c.experiment.out)
    return sweep_dir, cells


def _task_config(task: dict, shared: dict, search, path: str):
    """One task entry's config: its own config class, from the file's grid keys that the class has (lengths always)
    and the entry's own settings (any setting of the class but lengths, checked by key and type)."""
    from evals.registry import config_class, make_config

    try:
        cls = config_class(task["name"])
    except UserError as e:
        raise _err(f"{path}.name", str(e)) from None
    settings = settings_of(cls)
    own = {k: v for k, v in task.items() if k != "name"}
    if "lengths" in own:
        raise _err(f"{path}.lengths", "lengths are the file's (the top-level lengths: or search:)")
    if search is not None and "depths" not in settings:
        raise _err(path, f"a search needs a generation task; {task['name']} has no depths to search over")
    values = {k: v for k, v in shared.items() if k in settings and v is not None}
    try:
        return make_config(task["name"], {**values, **own}, where=f"{path}.")
    except UserError as e:
        msg = str(e)
        raise (e if msg.startswith(path) else _err(path, msg)) from None


class DuplicateKey(Exception):
    pass


def _unique_key_loader():
    """PyYAML's safe loader, refusing a key given twice in one mapping (safe_load keeps the last, silently)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in seen:
                        where = f"lines {seen[key]} and {line}" if seen[key] != line else f"line {line}"
                        raise DuplicateKey(f"key {key!r} is given twice ({where}); give it once")
                    seen[key] = line
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
            return super().construct_mapping(node, deep=deep)

    return Loader


def _search_config(doc: dict, where: str):
    """The `search:` mapping as a SearchConfig (None without one); it replaces the grid keys."""
    if "search" not in doc:
        return None
    from harness.config import parse_length
    from harness.search import SearchConfig

    spec = doc["search"]
    clash = [k for k in ("lengths", "depths", "samples") if k in doc]
    if clash:
        raise _err(f"{where}{clash[0]}", "a search chooses its own lengths, depths and samples; give either "
                   "search: or the grid keys")
    for key, value in spec.items():
        if key not in SEARCH_KEYS:
            raise _err(f"{where}search.{key}", f"unknown key; allowed: {', '.join(SEARCH_KEYS)}")
        if not isinstance(value, SEARCH_KEYS[key]) or isinstance(value, bool):
            raise _err(f"{where}search.{key}", f"expected {' or '.join(t.__name__ for t in SEARCH_KEYS[key])}, "
                       f"got {type(value).__name__}")
    for key in ("min", "max"):
        if key not in spec:
            raise _err(f"{where}search.{key}", "required (the range's shortest and longest length)")
    try:
        ends = {k: parse_length(str(spec[k])) for k in ("min", "max")}
    except UserError as e:
        raise _err(f"{where}search", str(e)) from None
    try:
        return SearchConfig(low=ends["min"], high=ends["max"], **{k: spec[k] for k in
                                                                    ("threshold", "resolution", "max_samples")
                                                                    if k in spec})
    except UserError as e:
        raise _err(f"{where}search", str(e)) from None


def _slug(name: str, params: dict) -> str:
    """A cell's directory name from its parameters; a list of numbers stands as a short digest of its values."""
    import hashlib

    def show(v):
        if isinstance(v, (list, tuple)):
            return f"{len(v)}v" + hashlib.sha256(repr([float(x) for x in v]).encode()).hexdigest()[:8]
        return v
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name + "".join(f"_{k}={show(v)}" for k, v in sorted(params.items())))


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"([0-9]+)/([0-9]+)", text.strip(), re.ASCII)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise UserError(f"bad --shard {text!r}: use i/n with 0 <= i < n, e.g. 0/2")
    return int(m.group(1)), int(m.group(2))


def run_sweep(path: str, out: str | None = None, shard: tuple[int, int] | None = None,
              log: Callable[[str], None] = print, progress: bool = True, dry_run: bool = False,
              executor: str = "local", ray_address: str | None = None, cpus_per_worker: float = 1,
              gpus_per_worker: float = 0, max_memory: int | None = None, tensor_parallel: int | None = None,
              confirm: Callable[[str], bool] | None = None) -> Path:
    """Check every cell, then run this shard's cells: in order here, or as Ray actors (executor="ray"); either
    way each cell resumes like a single experiment and only this process writes the run directories.
    max_memory: bytes a cell's longest request may be predicted to peak at (default: the memory available when
    the sweep starts, fixed for the whole sweep)."""
    from harness.experiment import check_size, grid_cost, identity, prepare, run
    from harness.records import check_run_dir

    if executor not in ("local", "ray"):
        raise UserError(f"unknown executor {executor!r}; use local or ray")
    if not cpus_per_worker > 0 or not gpus_per_worker >= 0:
        raise UserError(f"--cpus-per-worker must be > 0 and --gpus-per-worker >= 0, got {cpus_per_worker} and "
                        f"{gpus_per_worker}")
    sweep_dir, cells = load(path, out)
    if executor == "ray":
        if any(c.search for c in cells):
            raise UserError(f"{path}: search cells run with the local executor (or as shards: --shard i/n); "
                            "the Ray executor runs grids")
        check_ray_address(ray_address)
    if tensor_parallel is not None:  # every vLLM cell's engine, as its tensor_parallel_size
        from harness.runners import runner_options

        def shards(c) -> bool:  # a runner that takes the option (vLLM's engine)
            return "tensor_parallel_size" in runner_options(c.experiment.runner)

        if not any(shards(c) for c in cells):
            raise UserError("--tensor-parallel shards vLLM engines; this sweep has no vllm runner")
        cells = [dataclasses.replace(c, experiment=dataclasses.replace(
            c.experiment, runner_options={**c.experiment.runner_options, "tensor_parallel_size": tensor_parallel}))
            if shards(c) else c for c in cells]
    if shard is not None:
        i, n = shard
        cells = [c for c in cells if c.index % n == i]
    budget = _Budget(max_memory)
    cells = [dataclasses.replace(c, experiment=dataclasses.replace(c.experiment, max_memory=budget(c.experiment)))
             for c in cells]
    every, prepared, todos = [], [], []
    for c in cells:  # every mistake surfaces here, before anything is written
        p = prepare(c.experiment, log=lambda *_: None, build_prompts=False)
        check_run_dir(Path(c.experiment.out), identity(p))
        every.append(p)
        if c.search is None:
            from harness.records import read_records, sample_key

            done = {r.key for r in read_records(c.experiment.out) if r.error is None}
            prepared.append(p)
            todos.append([x for x in p.task.cells() if sample_key(p.task.name, *x) not in done])
    if not dry_run:
        check_size(grid_cost(prepared, todos), confirm, log)
    for p in every:  # the prompts of each cell's shortest length, once the grid's size is agreed
        p.task.check(p.tokenizer)
    log(f"sweep {path}: {len(cells)} cells" + (f" (shard {shard[0]}/{shard[1]})" if shard else "")
        + f" -> {sweep_dir}")
    if dry_run:
        for c in cells:
            log(f"  cell {c.index}: {c.experiment.out}")
        return sweep_dir
    if executor == "ray":
        _run_on_ray(cells, log, ray_address, cpus_per_worker, gpus_per_worker)
        return sweep_dir
    progress_line = SweepProgress(cells)
    for c in cells:
        log(progress_line.before(c))
        if c.search is not None:
            from harness.search import run_search

            log(f"search {Path(c.experiment.out).name}: " + run_search(c.experiment, c.search, log=log).summary())
        else:
            run(c.experiment, log=log, progress=progress)
        progress_line.after(c)
    log(progress_line.final())
    return sweep_dir


def _samples_left(exp) -> tuple[int, int]:
    """(samples still to do, samples in all) of one cell, from its task grid and its run directory's records."""
    from evals.registry import make_task
    from harness.records import read_records, sample_key

    task = make_task(exp.task, exp.task_config)
    keys = [sample_key(task.name, *c) for c in task.cells()]
    done = set()
    if (Path(exp.out) / "results.jsonl").exists():
        done = {r.key for r in read_records(exp.out)}
    return sum(k not in done for k in keys), len(keys)


class SweepProgress:
    """The whole sweep's progress line: cells done of all, samples done of all, and an ETA from this run's
    sample rate (samples found done at the start do not count towards the rate)."""

    def __init__(self, cells: list[Cell]):
        # a search cell's sample count is not known before it runs: counted as cells only
        self.left = {c.index: _samples_left(c.experiment) if c.search is None else (0, 0) for c in cells}
        self.total = sum(n for _, n in self.left.values())
        self.todo = sum(t for t, _ in self.left.values())
        self.cells, self.done_cells, self.done_now = len(cells), 0, 0
        self.t0 = time.perf_counter()

    def _status(self) -> str:
        done = self.total - self.todo + self.done_now
        rate = self.done_now / (time.perf_counter() - self.t0) if self.done_now else None
        eta = f", ETA {(self.todo - self.done_now) / rate / 60:.0f} min" if rate else ""
        return f"cells {self.done_cells}/{self.cells}, samples {done}/{self.total}{eta}"

    def before(self, c: Cell) -> str:
        return f"[sweep: {self._status()}] cell {c.index}: {Path(c.experiment.out).name}"

    def after(self, c: Cell) -> None:
        self.done_cells += 1
        self.done_now += self.left[c.index][0]

    def final(self) -> str:
        return f"[sweep: {self._status()}] done in {(time.perf_counter() - self.t0) / 60:.1f} min"


class _Budget:
    """--max-memory, else the memory available on a cell's device when the sweep started: one figure per device for
    the whole sweep, so that no cell is refused half-way because an earlier one's memory was not yet returned."""

    def __init__(self, max_memory: int | None):
        self.max_memory, self.available = max_memory, {}

    def __call__(self, exp) -> int | None:
        from harness.memory import available_memory

        if self.max_memory is not None:
            return self.max_memory
        device = str(exp.runner_options.get("device") or "cpu")
        if device not in self.available:
            self.available[device] = available_memory(device)
        return self.available[device]


def dump(exp, search=None) -> str:
    """The experiment file that reproduces one experiment command (`--dump-config`): the file's grid keys from the
    task config's fields of those names, every other setting that differs from its default in the task's entry;
    with `search` (a SearchConfig), a `search:` mapping instead of lengths, depths and samples."""
    import yaml

    from harness.config import format_length

    tc = exp.task_config
    fields = {f.name: f for f in dataclasses.fields(tc)}
    values = dataclasses.asdict(tc)
    grid = {k: list(values[k]) if isinstance(values[k], tuple) else values[k]
            for k in ("depths", *SHARED) if k in values}
    grid = {k: v for k, v in grid.items() if k in ("depths", "samples", "seed", "haystack") or
            v != fields[k].default}
    own = {k: v for k, v in values.items() if k != "lengths" and k not in grid and k not in SHARED and
           v != fields[k].default}
    parent = Path(exp.out).parent
    doc = {"out": str(parent) if str(parent) != "." else f"{exp.out}-sweep", "models": [exp.model],
           "tasks": [{"name": exp.task, **{k: list(v) if isinstance(v, tuple) else v for k, v in own.items()}}],
           "extensions": [{"name": exp.extension, **({"params": dict(exp.extension_params)}
                                                     if exp.extension_params else {})}],
           "runners": [{"name": exp.runner, **({"options": dict(exp.runner_options)} if exp.runner_options else {})}]}
    for key in ("diagnostics", "ablate_heads", "heads_from"):
        if getattr(exp, key):
            doc[key] = getattr(exp, key)
    if search is None:
        doc["lengths"] = [format_length(n) for n in tc.lengths]
        doc.update(grid)
    else:
        doc.update({k: v for k, v in grid.items() if k not in ("depths", "samples")})
        doc["search"] = {"min": format_length(search.low), "max": format_length(search.high),
                         "threshold": search.threshold, "resolution": search.resolution,
                         "max_samples": search.max_samples}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def decided(sweep_dir: Path) -> set[tuple]:
    """What a sweep's runs decided (cell, sample key, prompt hash, prompt tokens, greedy output, strict and primary
    scores), without what they measured (latency, memory, host): equal for the same sweep run any way."""
    from harness.records import read_records

    return {(d.name, r.key, r.prompt_sha, r.tokens, r.prediction, r.correct, r.score)
            for d in sorted(Path(sweep_dir).iterdir()) if (d / "run.json").exists() for r in read_records(d)}


def compare(dirs: list[str]) -> tuple[bool, list[str]]:
    """Do two or more sweep directories hold the same decisions? (whether they agree, the lines that say how)"""
    sets = {d: decided(Path(d)) for d in dirs}
    first, ref = dirs[0], sets[dirs[0]]
    ok, lines = True, []
    for d in dirs[1:]:
        extra, missing = sets[d] - ref, ref - sets[d]
        same = not extra and not missing
        ok &= same
        lines.append(f"{d}: {len(sets[d])} records, " + ("identical to " + first if same else
                     f"{len(missing)} of {first}'s records missing, {len(extra)} not in it"))
        lines += [f"  {'-' if row in missing else '+'} {row}" for row in sorted(missing | extra, key=str)[:5]]
    lines.append(f"{first}: {len(ref)} records in {len({row[0] for row in ref})} cells; "
                 f"{sum(r[5] for r in ref)} strict-correct")
    return ok, lines


RAY_CONNECT_TIMEOUT_S = 10.0
ACTOR_RESTARTS = 2  # a cell whose actor dies (killed, out of memory) is retried this many times


def check_ray_address(address: str | None, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """An explicit `host:port` (or `ray://host:port`) must answer within `timeout_s` — otherwise one line now,
    instead of ray.init's own retries, which wait much longer. Answering means speaking gRPC: Ray's GCS and its
    client server are gRPC servers, which reply to an HTTP/2 connection preface with a SETTINGS frame. (A bare TCP
    connect proves nothing where a proxy or a listen backlog accepts connections for a server that never replies.)"""
    import socket

    if not address or address == "auto":
        return
    m = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d{1,5})/?", address.strip())
    if not m:
        raise UserError(f"--ray-address {address!r}: give HOST:PORT or ray://HOST:PORT")
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + an empty SETTINGS
    try:
        with socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(preface)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except OSError as e:
        reason = "timed out" if isinstance(e, socket.timeout) else (e.strerror or type(e).__name__)
        raise UserError(f"--ray-address {address}: no answer within {timeout_s:.0f} s ({reason})") from None
    if len(head) < 9 or head[3] != 4:
        raise UserError(f"--ray-address {address}: something answers there, but not a Ray (gRPC) server")


def _run_on_ray(cells: list[Cell], log, address: str | None, cpus: float, gpus: float) -> None:
    """Each cell with samples left becomes one Ray actor that loads the model once and returns records as JSON;
    this process (the driver) alone appends them to the run directories, in each cell's order, as they arrive.
    An actor that dies is restarted (its model loaded again) and its unfinished samples retried, up to
    ACTOR_RESTARTS times; nothing it returned before is lost, since only the driver writes."""
    try:
        import ray
    except ImportError:
        raise UserError('--executor ray needs Ray: pip install -e ".[ray]" (make setup installs it)') from None
    import dataclasses

    from harness.experiment import open_run, reuse_order
    from harness.records import SampleRecord

    @ray.remote
    class CellWorker:
        def __init__(self, exp, max_length: int):
            from harness.experiment import new_runner, prepare, record_fields

            self.p = prepare(exp, log=lambda *_: None)
            self.runner = new_runner(self.p)
            self.info = self.runner.load(self.p.model_path, self.p.extension, self.p.extension_config,
                                         max_length=max_length)  # here, so that a restarted actor loads again
            self.common = record_fields(self.p, self.info)

        def load(self) -> dict:
            return dataclasses.asdict(self.info)

        def run(self, cell) -> str:
            from harness.experiment import generated_records

            diagnostics = []
            (record,) = generated_records(self.p, self.runner, [cell], self.common, lambda *_: None,
                                          on_diagnostics=lambda key, payload: diagnostics.append((key, payload)))
            return json.dumps({"record": record.to_json(), "diagnostics": diagnostics})

    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"cannot reach Ray at {address or 'a new local instance'}: {str(e).splitlines()[0]}") from None
    try:
        # Every cell's actor is created and its samples submitted at once; Ray starts an actor when a worker slot is
        # free. A finished cell's actor is killed, which frees its slot for the next: a sweep may have more cells
        # than the cluster has slots. Each cell's load info is written before its first record.
        pending: dict = {}  # ref → run dir
        cells_open: dict = {}  # run dir → {"rd", "worker", "load": ref or None once noted, "refs": in cell order}
        for c in cells:
            p, rd, todo = open_run(c.experiment, log)
            if not todo or p.task.scores_tokens:
                if todo:
                    raise UserError(f"{c.experiment.task}: token-scoring tasks run with the local executor")
                continue
            w = CellWorker.options(num_cpus=cpus, num_gpus=gpus, max_restarts=ACTOR_RESTARTS,
                                   max_task_retries=ACTOR_RESTARTS).remote(c.experiment, max(t[0] for t in todo))
            if c.experiment.runner_options.get("prefix_cache"):
                todo = reuse_order(todo)
            load, refs = w.load.remote(), [w.run.remote(t) for t in todo]
            cells_open[rd.path] = {"rd": rd, "worker": w, "load": load, "refs": refs}
            for ref in [load, *refs]:
                pending[ref] = rd.path
        actors = len(cells_open)
        written, total, t0 = 0, len(pending) - actors, time.perf_counter()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            path = pending.pop(ready[0])
            cell = cells_open[path]
            if cell["load"] is not None and cell["load"] not in pending:
                cell["rd"].note_load(ray.get(cell["load"]))
                cell["load"] = None
            while cell["load"] is None and cell["refs"] and cell["refs"][0] not in pending:  # in the cell's order
                done = json.loads(ray.get(cell["refs"].pop(0)))
                for key, payload in done["diagnostics"]:
                    cell["rd"].append_diagnostics(tuple(key), payload)
                cell["rd"].append(SampleRecord.from_dict(json.loads(done["record"])))
                written += 1
            if cell["load"] is None and not cell["refs"]:
                ray.kill(cells_open.pop(path)["worker"], no_restart=True)  # its slot goes to a waiting cell
            if written:
                rate = written / (time.perf_counter() - t0)
                log(f"[ray: samples {written}/{total}, cells {actors - len(cells_open)}/{actors}, "
                    f"ETA {(total - written) / rate / 60:.0f} min]")
        log(f"ray: {written} records from {actors} actor(s)")
    finally:
        ray.shutdown()
