"""Epoch time per Keras backend (torch, jax) against a bare PyTorch loop, per family and length.

One run measures, on the machine it runs on (a GPU when there is one), on the
adding task:

- the epoch time of lstm, gru, bilstm and transformer built from search_spaces
  with fixed hyperparameters (width W, depth 1, dropout 0, the families'
  default learning rate and gradient clipping), trained by `model.fit` under
  KERAS_BACKEND=torch and =jax, each backend in its own process;
- a bare PyTorch loop doing the same work for lstm, gru and bilstm
  (Linear projection -> torch.nn.LSTM/GRU, cuDNN on a GPU -> Linear head; Adam
  with the same learning rate, epsilon and per-tensor gradient-norm clipping;
  the same arrays, batch size and shuffling; the data held on the device), and
  the ratio harness/bare, the headline figure;
- the transformer in fp32 (what the suites run) and in bf16 mixed precision
  (`keras.mixed_precision.set_global_policy("mixed_bfloat16")`), each with
  fused attention on (`keras.config.enable_flash_attention()`, Keras' default)
  and off (`disable_flash_attention()`; on torch, scaled_dot_product_attention
  also held to its math kernel);
- whether the fused RNN kernel ran, as observed in a training step
  (harness.backend.observe_fused_rnn), and whether fused attention was taken.

A figure is the median of the epochs after the first (which includes
compilation). A setting that runs out of device memory is recorded as "oom"
(another failure as "error", with its message), and the run goes on. On a CPU
the bare loop turns oneDNN's RNN kernels off: on the project's 2-core Xeon they
were about 100 times slower than PyTorch's plain ones at small sizes. The bare
LSTM/GRU carry PyTorch's two bias vectors (as cuDNN does), Keras' one. Results go to
<out>/<device-slug>.json and .md (or --stem), rewritten after each process; interrupted
(SIGINT: a time limit, Ctrl-C), it keeps what was measured and exits 130.

    python benchmarks/gpu_backends.py                      # T = 100, 1000, 10000; batch 256; width 128
    python benchmarks/gpu_backends.py --lengths 16 32 --batch-size 8 --width 8 --examples 32

Why one file: it is the measuring process too (run_inner starts this
file again with --inner, once per backend and once for the bare loop), it is copied alone
to a GPU machine beside a wheel bundle (docs/gpu.md), and the Keras measurement, the bare
PyTorch loop, the merge and the report share its settings; split, the parts would pass
those settings back and forth.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FAMILIES = ["lstm", "gru", "bilstm", "transformer"]
RECURRENT = ["lstm", "gru", "bilstm"]
BACKENDS = ["torch", "jax"]
TASK = "adding"
HEADS = 4  # the transformer's default
LEARNING_RATE = 3e-3  # the families' default (search_spaces.base.optimizer)
# Settings: name -> (dtype policy, fused attention). Fused attention on is
# `keras.config.enable_flash_attention()`, Keras' default: MultiHeadAttention then
# takes the flash kernel where the backend's check passes (GPU, fp16/bf16, no
# dropout). Off is `disable_flash_attention()`, and on torch also holds
# scaled_dot_product_attention to its math kernel. The recurrent families run
# the first setting only.
VARIANTS = {
    "fp32": ("float32", True),
    "fp32-nofused": ("float32", False),
    "bf16": ("mixed_bfloat16", True),
    "bf16-nofused": ("mixed_bfloat16", False),
}
MAIN = "fp32"  # what the suites run


INTERRUPTED = "interrupted (a time limit or Ctrl-C)"


def outcome_of(error: BaseException) -> str:
    """'oom' for an out-of-memory error of any backend, else 'error'."""
    from harness import backend

    return "oom" if backend.is_out_of_memory(error) else "error"


def short(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


class Recorder:
    """Appends measurements and rewrites the result file after each, so a crash loses none."""

    def __init__(self, path: str, header: dict):
        self.path, self.data = path, {**header, "results": []}
        self.save()

    def add(self, row: dict) -> None:
        self.data["results"].append(row)
        self.save()
        status = row["seconds"] if isinstance(row["seconds"], str) else f"{row['seconds']:.3f} s"
        print(
            f"  {row['backend']:<6}{row['family']:<12}{row['variant']:<14}T={row['length']:<7}{status}"
        )

    def save(self) -> None:
        Path(self.path).write_text(json.dumps(self.data, indent=1))


# -- the harness side: one process per Keras backend -----------------------------------


def measure_keras(args, result_file: str) -> None:
    from harness import backend

    backend.configure()
    import keras
    import keras_tuner as kt

    from search_spaces import get_space
    from tasks import get_task

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    recorder = Recorder(
        result_file,
        {"device": backend.device(), "gpu": backend.accelerator(), "versions": backend.versions()},
    )
    task = get_task(TASK)
    for length in args.lengths:
        x, y = task.generate(args.examples, length, 0, "train")
        for family in args.families:
            variants = args.variants if family == "transformer" else [MAIN]
            for variant in variants:
                policy, flash = VARIANTS[variant]
                row = {"backend": backend.name(), "family": family, "variant": variant}
                row |= {"length": length, "dtype_policy": policy, "flash_attention": flash}
                keras.backend.clear_session()
                keras.mixed_precision.set_global_policy(policy)
                if flash:
                    keras.config.enable_flash_attention()
                else:
                    keras.config.disable_flash_attention()
                timer = EpochTimer()
                timer.times = []
                model = None
                try:
                    hp = kt.HyperParameters()
                    hp.Fixed("width" if family == "transformer" else "units", args.width)
                    hp.Fixed("depth", 1)
                    hp.Fixed("dropout", 0.0)
                    if family == "transformer":
                        hp.Fixed("heads", HEADS)
                    model = get_space(family, task).build(hp)
                    with math_attention_only(backend.name(), not flash):
                        model.fit(
                            x,
                            y,
                            epochs=args.epochs,
                            batch_size=args.batch_size,
                            verbose=0,
                            callbacks=[timer],
                        )
                    row["seconds"] = statistics.median(timer.times[1:])
                    row["epoch_seconds"] = timer.times
                    row["parameters"] = model.count_params()
                except Exception as error:  # noqa: BLE001 - recorded, the run goes on
                    row["seconds"] = outcome_of(error)
                    row["error"] = short(error)
                row["fused_rnn_kernel"] = (  # as observed in a training step of the model
                    backend.observe_fused_rnn(model, x[: args.batch_size], y[: args.batch_size])
                    if model
                    else "n/a"
                )
                row["fused_attention"] = (
                    fused_attention(
                        backend.name(), length, HEADS, args.width // HEADS, policy, flash
                    )
                    if family == "transformer"
                    else "n/a"
                )
                recorder.add(row)
                del model
                keras.mixed_precision.set_global_policy("float32")
                keras.config.enable_flash_attention()
                release_device_memory(backend.name())


def fused_attention(backend_name: str, length: int, heads: int, head_dim: int, policy: str, flash):
    """Whether MultiHeadAttention takes the flash kernel: yes or no (Keras' own check).

    Asks the backend's check (cuDNN flash attention on JAX, the FLASH_ATTENTION
    kernel of scaled_dot_product_attention on PyTorch) on inputs of this shape and
    compute dtype, as MultiHeadAttention does unless flash attention is disabled.
    It needs a GPU, fp16/bf16 and no attention dropout. Where it says no with
    fused attention on, PyTorch's SDPA may still pick its memory-efficient kernel.
    Only this benchmark asks it, so it lives here rather than in harness/backend/.
    """
    from harness import backend

    if not flash or backend.accelerator() is None or backend_name not in ("jax", "torch"):
        return "no"
    import keras

    dtype = keras.mixed_precision.Policy(policy).compute_dtype
    q = keras.ops.zeros((1, length, heads, head_dim), dtype=dtype)
    try:
        if backend_name == "jax":
            from keras.src.backend.jax.nn import _can_use_flash_attention

            ok = _can_use_flash_attention(q, q, q, None)
        else:
            from keras.src.backend.torch.nn import _can_use_flash_attention

            q = q.transpose(1, 2)
            ok = _can_use_flash_attention(q, q, q, None)
    except Exception:  # noqa: BLE001 - a check that cannot run means no
        return "no"
    return "yes" if ok else "no"


def math_attention_only(backend_name: str, active: bool):
    """On torch, hold scaled_dot_product_attention to its math kernel (no fused attention)."""
    import contextlib

    if not (active and backend_name == "torch"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def release_device_memory(backend_name: str) -> None:
    import gc

    gc.collect()
    if backend_name == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# -- the baseline: a bare PyTorch training loop ------------------------------------------


def measure_bare(args, result_file: str) -> None:
    import torch

    from tasks import get_task

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if cuda:
        versions["cudnn"] = str(torch.backends.cudnn.version())
        torch.backends.cudnn.benchmark = True
    else:
        torch.backends.mkldnn.enabled = False  # see the module's docstring
    recorder = Recorder(
        result_file,
        {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "versions": versions},
    )
    task = get_task(TASK)
    for length in args.lengths:
        x_np, y_np = task.generate(args.examples, length, 0, "train")
        for family in [f for f in args.families if f in RECURRENT]:
            row = {"backend": "bare", "family": family, "variant": MAIN, "length": length}
            row |= {"dtype_policy": "float32", "flash_attention": None}
            try:
                x = torch.from_numpy(x_np).to(device)
                y = torch.from_numpy(y_np).to(device)
                torch.manual_seed(0)
                model = bare_model(family, x.shape[-1], args.width).to(device)
                times = bare_epochs(model, x, y, args.batch_size, args.epochs, cuda)
                row["seconds"] = statistics.median(times[1:])
                row["epoch_seconds"] = times
                row["parameters"] = sum(p.numel() for p in model.parameters())
                row["fused_rnn_kernel"] = "yes" if cuda and torch.backends.cudnn.enabled else "no"
            except Exception as error:  # noqa: BLE001 - recorded, the run goes on
                row["seconds"] = outcome_of(error)
                row["error"] = short(error)
                row["fused_rnn_kernel"] = "n/a"
            row["fused_attention"] = "n/a"
            recorder.add(row)
            model = x = y = None
            release_device_memory("torch")


def bare_model(family: str, features: int, width: int):
    """Linear projection -> one LSTM/GRU layer (both directions for bilstm) -> Linear head."""
    import torch

    class BareRNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.project = torch.nn.Linear(features, width)
            rnn = torch.nn.GRU if family == "gru" else torch.nn.LSTM
            self.bidirectional = family == "bilstm"
            self.rnn = rnn(width, width, batch_first=True, bidirectional=self.bidirectional)
            self.head = torch.nn.Linear(width * (2 if self.bidirectional else 1), 1)

        def forward(self, x):
            _, state = self.rnn(self.project(x))
            h = state[0] if isinstance(state, tuple) else state
            last = torch.cat([h[-2], h[-1]], dim=-1) if self.bidirectional else h[-1]
            return self.head(last).squeeze(-1)

    return BareRNN()


def bare_epochs(model, x, y, batch_size: int, epochs: int, cuda: bool) -> list[float]:
    """Seconds of each epoch: shuffled batches, MSE, Adam, per-tensor clipping (as Keras' clipnorm)."""
    import torch

    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE, eps=1e-7)
    n, times = x.shape[0], []
    for _ in range(epochs):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(n, device=x.device)
        for i in range(0, n, batch_size):
            index = order[i : i + batch_size]
            loss = torch.nn.functional.mse_loss(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for p in params:
                torch.nn.utils.clip_grad_norm_(p, 1.0)
            optimizer.step()
        loss.item()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


# -- the driver: subprocesses, table, ratios, files --------------------------------------


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "unknown"


def run_inner(kind: str, backend_name: str | None, args, folder: str) -> dict:
    """Run one measuring process; what it recorded before any crash, plus the crash's last line."""
    result_file = os.path.join(folder, f"{kind}-{backend_name or 'bare'}.json")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if backend_name:
        env["KERAS_BACKEND"] = backend_name
    command = [sys.executable, __file__, "--inner", kind, "--result-file", result_file]
    command += ["--lengths", *map(str, args.lengths), "--families", *args.families]
    command += ["--batch-size", str(args.batch_size), "--width", str(args.width)]
    command += ["--examples", str(args.examples), "--epochs", str(args.epochs)]
    try:
        done = subprocess.run(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    except KeyboardInterrupt:  # a time limit's SIGINT or Ctrl-C: keep what it recorded
        done = None
    data = json.loads(Path(result_file).read_text()) if Path(result_file).exists() else {}
    data.setdefault("results", [])
    if done is None:
        data["crash"] = INTERRUPTED
    elif done.returncode != 0:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:]
        data["crash"] = f"exit {done.returncode}: {tail[0] if tail else ''}"[:300]
        print(f"{backend_name or 'bare'}: process failed: {data['crash']}", file=sys.stderr)
    return data


def fill_missing(rows, backend_name: str, families, lengths, variants_run, reason: str) -> None:
    """A setting the crashed process never reached is recorded as an error, not left out."""
    seen = {(r["family"], r["variant"], r["length"]) for r in rows}
    for length in lengths:
        for family in families:
            variants = (
                variants_run if family == "transformer" and backend_name != "bare" else [MAIN]
            )
            for variant in variants:
                if (family, variant, length) not in seen:
                    rows.append(
                        {
                            "backend": backend_name,
                            "family": family,
                            "variant": variant,
                            "length": length,
                            "seconds": "error",
                            "error": reason,
                            "fused_rnn_kernel": "n/a",
                            "fused_attention": "n/a",
                        }
                    )


def ratios(results: list[dict], backends: list[str]) -> list[dict]:
    """harness/bare for each backend, recurrent family and length (None where either failed)."""
    seconds = {
        (r["backend"], r["family"], r["length"]): r["seconds"]
        for r in results
        if r["variant"] == MAIN
    }
    out = []
    for (name, family, length), bare in seconds.items():
        if name != "bare":
            continue
        for backend_name in backends:
            harness = seconds.get((backend_name, family, length))
            ok = isinstance(harness, float) and isinstance(bare, float)
            out.append(
                {
                    "backend": backend_name,
                    "family": family,
                    "length": length,
                    "harness_seconds": harness,
                    "bare_seconds": bare,
                    "ratio": harness / bare if ok else None,
                }
            )
    return out


def fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"# Epoch time per backend on {report['device']}",
        "",
        f"{report['date']}; task {s['task']}, batch {s['batch_size']}, width {s['width']}, "
        f"{s['examples']} examples per epoch, median of epochs 2..{s['epochs']}; seconds per epoch. "
        "`python benchmarks/gpu_backends.py` wrote this.",
        "",
        "## Harness (model.fit) against a bare PyTorch loop",
        "",
    ]
    backends = report["settings"]["backends"]
    index = {(r["backend"], r["family"], r["variant"], r["length"]): r for r in report["results"]}
    ratio = {(r["backend"], r["family"], r["length"]): r["ratio"] for r in report["ratios"]}
    head = ["family", "T", *backends, "bare", *(f"{b}/bare" for b in backends)]
    head += [f"fused RNN {b}" for b in backends]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for family in [f for f in report["settings"]["families"] if f in RECURRENT]:
        for length in report["settings"]["lengths"]:
            cells = [family, str(length)]
            cells += [
                fmt(index.get((b, family, MAIN, length), {}).get("seconds")) for b in backends
            ]
            cells.append(fmt(index.get(("bare", family, MAIN, length), {}).get("seconds")))
            for b in backends:
                value = ratio.get((b, family, length))
                cells.append(f"{value:.2f}" if value is not None else "-")
            cells += [
                index.get((b, family, MAIN, length), {}).get("fused_rnn_kernel", "-")
                for b in backends
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if "transformer" in report["settings"]["families"]:
        lines += ["", "## Transformer: fused attention and mixed precision", ""]
        head = ["setting", "T", *backends, *(f"fused attention {b}" for b in backends)]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for variant in report["settings"]["variants"]:
            for length in report["settings"]["lengths"]:
                rows = [index.get((b, "transformer", variant, length), {}) for b in backends]
                cells = [variant, str(length), *(fmt(r.get("seconds")) for r in rows)]
                cells += [r.get("fused_attention", "-") for r in rows]
                lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "fp32: what the suites run (Keras' defaults, `enable_flash_attention()`: the flash "
            "kernel where the backend's check passes); bf16: the mixed_bfloat16 policy; "
            "-nofused: `disable_flash_attention()`, and on torch SDPA's math kernel only.",
        ]
    errors = [r for r in report["results"] if r.get("error")]
    if errors:
        lines += ["", "## Not measured", ""]
        lines += [
            f"- {r['backend']} {r['family']} {r['variant']} T={r['length']}: {r['seconds']} ({r['error']})"
            for r in errors
        ]
    return "\n".join(lines) + "\n"


def print_table(report: dict) -> None:
    backends = report["settings"]["backends"]
    print(f"\n{report['device']}: seconds per epoch (harness/bare)")
    index = {(r["backend"], r["family"], r["variant"], r["length"]): r for r in report["results"]}
    ratio = {(r["backend"], r["family"], r["length"]): r["ratio"] for r in report["ratios"]}
    print(
        f"{'family':<13}{'variant':<14}{'T':>7}" + "".join(f"{b:>20}" for b in [*backends, "bare"])
    )
    for row_key in sorted({(r["family"], r["variant"], r["length"]) for r in report["results"]}):
        family, variant, length = row_key
        line = f"{family:<13}{variant:<14}{length:>7}"
        for b in [*backends, "bare"]:
            r = index.get((b, family, variant, length))
            if r is None:
                line += f"{'':>20}"
                continue
            cell = fmt(r["seconds"])
            if b != "bare" and ratio.get((b, family, length)) is not None and variant == MAIN:
                cell += f" ({ratio[(b, family, length)]:.2f}x)"
            line += f"{cell:>20}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--examples", type=int, default=4096, help="examples per epoch")
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per setting; the first is not timed"
    )
    parser.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    parser.add_argument("--families", nargs="+", default=FAMILIES, choices=FAMILIES)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="transformer settings",
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare PyTorch baseline")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the results"
    )
    parser.add_argument(
        "--stem", help="the results' file name, without suffix (default: the device)"
    )
    parser.add_argument("--inner", choices=["keras", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")
    if args.inner == "keras":
        return measure_keras(args, args.result_file)
    if args.inner == "bare":
        return measure_bare(args, args.result_file)

    started = time.perf_counter()
    results, versions, devices, crashes = [], {}, {}, {}
    interrupted, written = False, None
    with tempfile.TemporaryDirectory() as folder:
        runs = [("keras", b) for b in args.backends]
        if not args.no_bare and any(f in RECURRENT for f in args.families):
            runs.append(("bare", None))
        for kind, name in runs:
            label = name or "bare"
            module = "torch" if kind == "bare" else name
            if interrupted:
                data = {"results": [], "crash": "not run: interrupted"}
            elif importlib.util.find_spec(module) is None:
                data = {"results": [], "crash": f"{module} is not installed"}
            else:
                print(f"{label}: measuring", flush=True)
                data = run_inner(kind, name, args, folder)
                interrupted = data.get("crash") == INTERRUPTED
            if "crash" in data:
                crashes[label] = data["crash"]
            families = (
                args.families if kind == "keras" else [f for f in args.families if f in RECURRENT]
            )
            reason = crashes.get(label, "")
            fill_missing(data["results"], label, families, args.lengths, args.variants, reason)
            results += data["results"]
            versions[label] = data.get("versions")
            devices[label] = data.get("gpu") or data.get("device")
            report = build_report(args, results, versions, devices, crashes, started)
            written = save(report, Path(args.out), args.stem, written)
    print_table(report)
    print(f"\nwrote {written}.json and {written}.md in {report['wall_seconds']} s")
    if interrupted:
        raise SystemExit(130)


def build_report(args, results, versions, devices, crashes, started) -> dict:
    return {
        "device": next((d for d in devices.values() if d), "unknown"),
        "devices": devices,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": {
            "task": TASK,
            "lengths": args.lengths,
            "batch_size": args.batch_size,
            "width": args.width,
            "examples": args.examples,
            "epochs": args.epochs,
            "backends": args.backends,
            "families": args.families,
            "variants": args.variants,
        },
        "versions": versions,
        "crashes": crashes,
        "results": results,
        "ratios": ratios(results, args.backends),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def save(report: dict, out: Path, stem: str | None, written: Path | None) -> Path:
    """Write <out>/<stem>.json and .md (after each process: a time limit loses only the
    running one's unsaved rows); files of an earlier name (the device found later) go."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / (stem or slug(report["device"]))
    if written is not None and written != path:
        for suffix in (".json", ".md"):
            written.with_suffix(suffix).unlink(missing_ok=True)
    path.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(report))
    return path


if __name__ == "__main__":
    main()
