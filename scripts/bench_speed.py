"""Speed of one DP-SGD step against a non-private step, for dpbench's engines and Opacus.

Three workloads: the MNIST tanh CNN (batch 512), the CIFAR-10 tanh CNN (batch 256) and the telemetry
MLP-VAE (300-512-256-64 and back, 620k parameters, batch 4096, Gaussian reconstruction + KL loss).
Every method runs one whole logical batch per step (data are random: only speed is measured):

  nonprivate        forward, mean loss, backward, SGD step
  functorch_flat    dpbench kernel, FixedClipping, FunctorchEngine (vmap over grad)
  ghost_flat        dpbench kernel, FixedClipping, GhostEngine (ghost norms + book-keeping)
  ghost_perlayer    dpbench kernel, PerLayerClipping (one group per parameter tensor), GhostEngine
  ghost_adaptive    dpbench kernel, AdaptiveClipping (median quantile, noised count), GhostEngine
  ghost_normalized  dpbench kernel, AutomaticClipping (R g / (||g|| + 0.01)), GhostEngine
  plugin_functorch  researcher form: FlatClipPlugin via PluginPrivatizer, FunctorchEngine
  plugin_ghost      researcher form: FlatClipPlugin via PluginPrivatizer, GhostEngine.materialize
  opacus_hooks      Opacus PrivacyEngine.make_private(grad_sample_mode="hooks")
  opacus_ghost      Opacus PrivacyEngine.make_private(grad_sample_mode="ghost")

Timings are taken in one process, all methods interleaved (the order rotates every pass) after
warm-up; the table reports the median over passes of the per-step time and the spread of the pass
medians. ``--clock wall`` (the default) times elapsed seconds; ``--clock cpu`` the process's CPU
seconds, which other jobs on a shared machine barely change when run with ``--threads 1`` (with more
threads, time spent spinning in idle worker threads counts too). Peak memory is measured per method in a fresh subprocess: the growth of the process's peak
resident set size (``VmHWM``, reset through /proc/self/clear_refs once the model, data and method are
built) over the resident size at that point, during three steps; it includes the allocator's
retained heap, so it is the step's high-water mark. dpbench's allocator setting
(``dpbench.runtime.tune_allocator()``, applied at import of this script) holds for every method.

Methods that materialise per-example gradients of the whole logical batch (the researcher form,
Opacus hooks) are run at a smaller batch when that buffer would exceed ``--max-materialized-gb``, and
their time is scaled linearly to the full batch (marked in the table); ``functorch_flat`` instead
uses physical chunks, as the training loop does.

Usage: python scripts/bench_speed.py --out results/bench [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dpbench.runtime import tune_allocator

ALLOCATOR_TUNED = tune_allocator()

import torch
from torch import nn

from dpbench.engine import FunctorchEngine, GhostEngine
from dpbench.models import Cifar10TanhCNN, MnistTanhCNN
from dpbench.privacy.mechanism import Mechanism
from dpbench.privacy.privatizer import PluginPrivatizer, StructuredPrivatizer
from mechanisms.adaptive import AdaptiveClipping
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin
from mechanisms.fixed import FixedClipping
from mechanisms.normalized import AutomaticClipping
from mechanisms.perlayer import PerLayerClipping

VAE_INPUT, VAE_LATENT = 300, 64


class MlpVae(nn.Module):
    """The telemetry workload's MLP-VAE: 300-512-256-(64 mean, 64 log-variance) and 64-256-512-300;
    620,460 parameters. The input is ``[B, 300 + 64]``: the record and the reparameterisation noise
    (drawn by the caller, so the forward pass is deterministic and per-example). The output is
    ``[B, 300 + 64 + 64]``: reconstruction, mean and log-variance."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(VAE_INPUT, 512), nn.Tanh(), nn.Linear(512, 256), nn.Tanh())
        self.mean = nn.Linear(256, VAE_LATENT)
        self.log_variance = nn.Linear(256, VAE_LATENT)
        self.decoder = nn.Sequential(
            nn.Linear(VAE_LATENT, 256), nn.Tanh(), nn.Linear(256, 512), nn.Tanh(), nn.Linear(512, VAE_INPUT)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        records, noise = features[:, :VAE_INPUT], features[:, VAE_INPUT:]
        hidden = self.encoder(records)
        mean, log_variance = self.mean(hidden), self.log_variance(hidden)
        latent = mean + noise * torch.exp(0.5 * log_variance)
        return torch.cat([self.decoder(latent), mean, log_variance], dim=1)


class VaeLoss(nn.Module):
    """Negative ELBO with a unit-variance Gaussian decoder: ``0.5 ||x - x_hat||^2 + KL``, per example,
    reduced by ``reduction`` (``mean``, ``sum`` or ``none``; Opacus's ghost mode switches it)."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, output: torch.Tensor, records: torch.Tensor) -> torch.Tensor:
        reconstruction = output[:, :VAE_INPUT]
        mean, log_variance = output[:, VAE_INPUT : VAE_INPUT + VAE_LATENT], output[:, VAE_INPUT + VAE_LATENT :]
        nll = 0.5 * (records - reconstruction).pow(2).sum(dim=1)
        kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1.0 - log_variance).sum(dim=1)
        loss = nll + kl
        return {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[self.reduction]


@dataclass
class Workload:
    build: Callable[[], nn.Module]
    batch: int
    loss: Callable[[], nn.Module]
    data: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _images(shape: tuple[int, ...]) -> Callable:
    return lambda b, g: (torch.randn(b, *shape, generator=g), torch.randint(0, 10, (b,), generator=g))


def _vae_data(b: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    records = torch.randn(b, VAE_INPUT, generator=g)
    return torch.cat([records, torch.randn(b, VAE_LATENT, generator=g)], dim=1), records


WORKLOADS = {
    "mnist_cnn": Workload(MnistTanhCNN, 512, nn.CrossEntropyLoss, _images((1, 28, 28))),
    "cifar10_cnn": Workload(Cifar10TanhCNN, 256, nn.CrossEntropyLoss, _images((3, 32, 32))),
    "mlp_vae": Workload(MlpVae, 4096, VaeLoss, _vae_data),
}
METHODS = [
    "nonprivate",
    "functorch_flat",
    "ghost_flat",
    "ghost_perlayer",
    "ghost_adaptive",
    "ghost_normalized",
    "plugin_functorch",
    "plugin_ghost",
    "opacus_hooks",
    "opacus_ghost",
]
# How many copies of the whole logical batch's per-example gradients a method holds at once (the
# plugins get the engine's tensors as they are; Opacus keeps grad_sample and its clipped copy).
MATERIALIZED_COPIES = {"plugin_functorch": 1, "plugin_ghost": 1, "opacus_hooks": 2}
LR, CLIP, SIGMA, DATASET_SIZE = 0.01, 1.0, 1.0, 60_000
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
# The structured mechanism of each kernel method (the built-ins' conf/mechanism defaults).
MECHANISMS: dict[str, Callable[[], Mechanism]] = {
    "flat": lambda: FixedClipping(CLIP),
    "perlayer": lambda: PerLayerClipping(CLIP),
    "adaptive": lambda: AdaptiveClipping(CLIP, target_quantile=0.5, learning_rate=0.2, count_noise=10.0),
    "normalized": lambda: AutomaticClipping(CLIP, stability=0.01),
}


def build_step(workload: Workload, method: str, batch: int, max_bytes: float) -> tuple[Callable[[], None], dict]:
    """A closure running one training step of ``method``, and notes (batch actually run, time scale)."""
    torch.manual_seed(0)
    model = workload.build()
    loss = workload.loss()
    n_params = sum(p.numel() for p in model.parameters())
    notes = {"batch": batch, "scale": 1.0}
    copies = MATERIALIZED_COPIES.get(method, 0)
    run_batch = batch
    while copies and run_batch > 1 and run_batch * n_params * 4 * copies > max_bytes:
        run_batch //= 2
    if run_batch != batch:
        notes.update(batch=run_batch, scale=batch / run_batch)
    x, y = workload.data(run_batch, torch.Generator().manual_seed(1))
    params = [p for p in model.parameters() if p.requires_grad]
    shapes = [p.shape for p in params]
    optimizer = torch.optim.SGD(params, lr=LR)
    q = batch / DATASET_SIZE

    if method == "nonprivate":

        def step() -> None:
            loss(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step, notes

    if method.startswith("opacus"):
        from opacus import PrivacyEngine

        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=run_batch)
        mode = method.split("_", 1)[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            made = PrivacyEngine(accountant="rdp").make_private(
                module=model,
                optimizer=optimizer,
                criterion=loss,
                data_loader=loader,
                noise_multiplier=SIGMA,
                max_grad_norm=CLIP,
                poisson_sampling=False,
                grad_sample_mode=mode,
            )
        private_model, private_optimizer = made[0], made[1]
        criterion = made[2] if mode == "ghost" else loss

        def step() -> None:
            criterion(private_model(x), y).backward()
            private_optimizer.step()
            private_optimizer.zero_grad(set_to_none=True)

        return step, notes

    loss_fn = lambda output, target: loss(output, target)
    engine_name, kind = ("ghost" if "ghost" in method else "functorch"), method.split("_", 1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = GhostEngine(model, loss_fn) if engine_name == "ghost" else FunctorchEngine(model, loss_fn)
    physical = run_batch
    if method == "functorch_flat":
        while physical > 1 and physical * n_params * 4 > max_bytes:
            physical //= 2
        notes["physical_batch"] = physical
    generator = torch.Generator().manual_seed(2)
    if kind == "plugin":
        plugin = FlatClipPlugin(CLIP, SIGMA, n_params, DATASET_SIZE, batch, 1, 1.0, 1e-5)
        privatizer = PluginPrivatizer(plugin, "example_plugin", shapes, CLIP, q, key=2)  # releases keyed as a seeded run's
    else:
        mechanism = MECHANISMS[method.split("_", 1)[1]]()
        privatizer = StructuredPrivatizer(mechanism, shapes, SIGMA, batch, q, generator)

    def step() -> None:
        chunks = (
            engine.per_sample_gradients(x[i : i + physical], y[i : i + physical]) for i in range(0, run_batch, physical)
        )
        release = privatizer.release(chunks, 0, 0)
        for parameter, gradient in zip(params, release.gradient):
            parameter.grad = gradient
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, notes


def time_workload(workload: Workload, batch: int, args: argparse.Namespace) -> dict:
    steps, results = {}, {}
    for method in args.methods:
        try:
            steps[method], notes = build_step(workload, method, batch, args.max_materialized_gb * 2**30)
            for _ in range(args.warmup):
                steps[method]()
            results[method] = notes | {"pass_seconds": []}
        except Exception as error:  # noqa: BLE001 - a failing method is a result, recorded as such
            steps.pop(method, None)
            results[method] = {"error": f"{type(error).__name__}: {error}"[:300]}
            print(f"  {method}: {results[method]['error']}", flush=True)
    names = list(steps)
    clock = CLOCKS[args.clock]
    for p in range(args.passes):
        for method in names[p % len(names) :] + names[: p % len(names)]:
            started = clock()
            for _ in range(args.repeats):
                steps[method]()
            seconds = (clock() - started) / args.repeats * results[method]["scale"]
            results[method]["pass_seconds"].append(seconds)
    base = statistics.median(results["nonprivate"]["pass_seconds"]) if "nonprivate" in steps else math.nan
    for method in names:
        passes = results[method]["pass_seconds"]
        results[method].update(
            median_seconds=statistics.median(passes),
            min_seconds=min(passes),
            max_seconds=max(passes),
            ratio=statistics.median(passes) / base,
        )
    return results


def _rss_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe_memory(workload_name: str, method: str, batch: int, max_gb: float, steps: int) -> dict:
    """Run in a fresh process: growth of the peak resident set size during ``steps`` steps over the
    resident size once the model, data and method are built (the peak is reset first, so import-time
    transients do not count)."""
    step, _ = build_step(WORKLOADS[workload_name], method, batch, max_gb * 2**30)
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_mib("VmRSS")
    for _ in range(steps):
        step()
    return {"peak_rss_growth_mib": _rss_mib("VmHWM") - before}


def memory_of(workload_name: str, methods: list[str], batch: int, args: argparse.Namespace) -> dict[str, dict]:
    """Memory probes of ``methods``, each in its own process, run side by side (after the timings)."""
    threads = ["--threads", str(args.threads)] if args.threads else []
    probes = {
        method: subprocess.Popen(
            [sys.executable, __file__, "--probe", workload_name, method, str(batch)]
            + ["--max-materialized-gb", str(args.max_materialized_gb)]
            + threads,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONWARNINGS": "ignore"},
        )
        for method in methods
    }
    results = {}
    for method, probe in probes.items():
        stdout, stderr = probe.communicate()
        if probe.returncode != 0:
            last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {probe.returncode}"
            results[method] = {"memory_error": last[:300]}
        else:
            results[method] = json.loads(stdout.strip().splitlines()[-1])
    return results


def markdown(report: dict) -> str:
    lines = [
        (
            f"Allocator tuned (dpbench.runtime.tune_allocator): {report['allocator_tuned']}; torch {report['torch']}, "
            f"{report['threads']} threads, {report['clock']} clock; "
            f"{report['passes']} interleaved passes x {report['repeats']} steps; "
            f"load average before/after: {report['load_before']} / {report['load_after']}."
        ),
        "",
        "| model (batch) | method | median ms/step | pass spread ms | x non-private | peak RSS growth MiB | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload, rows in report["results"].items():
        for method, r in rows.items():
            head = f"| {workload} ({report['batches'][workload]}) | {method} |"
            if "error" in r:
                lines.append(f"{head} - | - | - | - | failed: {r['error'][:120]} |")
                continue
            notes = []
            if r["scale"] != 1.0:
                notes.append(f"run at batch {r['batch']}, time x{r['scale']:g}")
            if "physical_batch" in r and r["physical_batch"] != r["batch"]:
                notes.append(f"physical chunks of {r['physical_batch']}")
            if "memory_error" in r:
                notes.append(f"memory probe failed: {r['memory_error'][:80]}")
            memory = f"{r['peak_rss_growth_mib']:.0f}" if "peak_rss_growth_mib" in r else "-"
            lines.append(
                f"{head} {1000 * r['median_seconds']:.1f} | {1000 * r['min_seconds']:.1f}-{1000 * r['max_seconds']:.1f} | "
                f"{r['ratio']:.2f} | {memory} | {'; '.join(notes)} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write bench_speed.json and bench_speed.md here")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch / 8, 2 passes, no memory probes")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS, help="a subset (keep nonprivate for ratios)")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="steps per method per pass")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-materialized-gb", type=float, default=3.0)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help="elapsed or process CPU seconds")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--probe", nargs=3, metavar=("BENCHMARK", "METHOD", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        workload, method, batch = args.probe
        print(json.dumps(probe_memory(workload, method, int(batch), args.max_materialized_gb, steps=3)))
        return
    if args.quick:
        args.passes, args.repeats, args.warmup, args.no_memory = 2, 1, 1, True
    batches = {name: max(WORKLOADS[name].batch // (8 if args.quick else 1), 2) for name in args.workloads}
    report = {
        "allocator_tuned": ALLOCATOR_TUNED,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "clock": args.clock,
        "python": platform.python_version(),
        "passes": args.passes,
        "repeats": args.repeats,
        "load_before": [round(v, 2) for v in os.getloadavg()],
        "batches": batches,
        "results": {},
    }
    for name in args.workloads:
        print(f"{name} (batch {batches[name]})", flush=True)
        rows = time_workload(WORKLOADS[name], batches[name], args)
        if not args.no_memory:
            measured = memory_of(name, [m for m, row in rows.items() if "error" not in row], batches[name], args)
            for method, memory in measured.items():
                rows[method].update(memory)
        report["results"][name] = rows
        for method, row in rows.items():
            if "error" not in row:
                print(f"  {method:17s} {1000 * row['median_seconds']:9.1f} ms  x{row['ratio']:.2f}", flush=True)
    report["load_after"] = [round(v, 2) for v in os.getloadavg()]
    table = markdown(report)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_speed.json").write_text(json.dumps(report, indent=2))
        (args.out / "bench_speed.md").write_text(table)


if __name__ == "__main__":
    main()
