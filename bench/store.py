"""Feature-store read throughput: hope's training loader beside plain zarr.

At the seeds' shape (8 steps x 256 patches x 1024 dims, float16: 4 MiB a clip) a store of
--clips clips is written once per codec (none, zstd, lz4) under --dir, then batches of
--batch clips in shuffled order are read, for 1, 2 and N reader threads:

    plain zarr   `features[i]` per clip, the threads splitting the batch (the ceiling
                 for what the loader does: the same chunk reads, nothing else)
    plain oindex `features.oindex[sorted batch]`, one call (zarr's own concurrency)
    hope         hopecli.train.data.read_batch(store, batch, threads=n): features, actions
                 and states into the batch tensors, the first-read finite check included
                 and its actions and states kept (the warm-up pass reads every clip once,
                 the timed ones skip both)
    hope before  the loader of main before this change (one oindex call, a finite check
                 on every read, a reorder copy), 1 thread

It reports clips/s and MiB/s (median over --repeats passes over the store, with the
spread), and the loader's share of plain zarr at the same thread count and codec, and
beside them the GB/s of plain numpy copies on as many threads: reads from the page cache
copy every byte, so on a machine whose memory bandwidth does not grow with the threads
neither do they. The
files stay in the page cache after writing, so this measures decode and copies, not the
disk; drop the cache (or use a larger store than memory) to include the disk.

Beside it, what a GPU needs: the clips/s at which one training step (forward + backward,
one clip = 8 frames x 258 tokens) of each full preset runs on an H100 at 40% of its dense
bf16 peak (989 TFLOP/s, so 396 TFLOP/s), FLOPs counted as bench/blocks.py counts them.

    OMP_NUM_THREADS=1 python bench/store.py --threads 1 2 4 --json-out store.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import zarr
from rich.console import Console
from rich.table import Table

from hopecli.data.store import COMPRESSIONS, ClipFeatures, FeatureStore, _read_file_into
from hopecli.train import data as loader

err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)

T, P, D, A = 8, 256, 1024, 2
CLIP_MIB = T * P * D * 2 / 2**20
H100_BF16_DENSE = 989.0  # TFLOP/s
GPU_SHARE = 0.40
PRESETS = ("vit_baseline", "hope_phase5", "hybrid", "hope_multihead")


def make_store(path: Path, clips: int, compression: str) -> FeatureStore:
    attrs = {"encoder": {"name": "bench", "config": {}, "checksum": "none"}, "time_mode": "tubelet",
             "frames_per_clip": 2 * T, "resolution": 256, "fps": 4.0, "tubelet_size": 2, "patch_size": 16,
             "patches_per_step": P, "grid": [16, 16], "action_dim": A, "state_dim": A}
    store = FeatureStore.create_or_resume(path, attrs, steps=T, dim=D, compression=compression)
    ids = store.add_clips([f"c{i}.mp4#0" for i in range(clips)], ["bench"] * clips)
    rng = np.random.default_rng(0)
    # layer-normed-like features: what a V-JEPA 2 store holds (random bits would not compress)
    base = rng.standard_normal((T, P, D)).astype(np.float16)
    for i in ids:
        z = (base + 0.5 * rng.standard_normal((T, P, D))).astype(np.float16)
        a = rng.uniform(-1, 1, (T, A)).astype(np.float32)
        store.write(i, ClipFeatures(z, a, np.cumsum(a, 0)))
    return store


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _before_read_batch(store: FeatureStore, indices: list[int]):
    """The loader as it was on main: one oindex read, a finite check, a reorder copy."""
    order = np.argsort(indices, kind="stable")
    sorted_indices = [int(indices[k]) for k in order]
    clips = store.read_batch(sorted_indices)
    store.check_finite(sorted_indices, clips)
    back = np.argsort(order, kind="stable")
    return (torch.from_numpy(np.ascontiguousarray(clips.features[back])),
            torch.from_numpy(np.ascontiguousarray(clips.actions[back], dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(clips.states[back], dtype=np.float32)))


def plain_reader(array, threads: int):
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None

    def read(batch: list[int]):
        if pool is None:
            return [array[i] for i in batch]
        return list(pool.map(lambda i: array[i], batch))

    return read


def copy_ceiling(threads: int, mib: int = 64, repeats: int = 10) -> float:
    """GB/s of plain numpy copies of `mib` MiB buffers (touched before), `threads` at once: what
    memory bandwidth leaves for reads that copy every byte from the page cache."""
    src = [np.ones(mib * 2**20 // 2, np.float16) for _ in range(threads)]
    dst = [np.zeros_like(a) for a in src]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.perf_counter()
        list(pool.map(lambda k: [np.copyto(dst[k], src[k]) for _ in range(repeats)], range(threads)))
        seconds = time.perf_counter() - start
    return threads * repeats * mib * 2**20 / seconds / 1e9


def fresh_batch_reads(store: FeatureStore, batch: int, repeats: int = 5) -> dict[str, float]:
    """GB/s of reading `batch` uncompressed chunk files into a fresh batch, allocated by
    torch.empty or by numpy (which asks the kernel for huge pages on large arrays)."""
    files = [store.chunk_file("features", i) for i in range(batch)]
    shape = (batch, T, P, D)
    alloc = {"torch.empty": lambda: torch.empty(shape, dtype=torch.float16).numpy(),
             "np.empty": lambda: np.empty(shape, dtype=np.float16)}
    rates = {}
    for name, make in alloc.items():
        seconds = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            out = make()
            for k, path in enumerate(files):
                _read_file_into(path, out[k])
            seconds.append(time.perf_counter() - start)
        rates[name] = out.nbytes / statistics.median(seconds[1:]) / 1e9
    return rates


def passes(read, clips: int, batch: int, repeats: int, seed: int = 0) -> list[float]:
    """clips/s of each pass over the whole store in shuffled batches (one warm-up pass)."""
    rng = np.random.default_rng(seed)
    rates = []
    for r in range(repeats + 1):
        order = rng.permutation(clips).tolist()
        start = time.perf_counter()
        for k in range(0, clips - batch + 1, batch):
            read(order[k : k + batch])
        seconds = time.perf_counter() - start
        if r:
            rates.append((clips // batch) * batch / seconds)
    return rates


def gpu_need() -> list[dict]:
    """Clips/s a training step of each full preset needs on an H100 at GPU_SHARE of peak."""
    sys.path.insert(0, str(Path(__file__).parent))
    from blocks import model_flops, preset_case

    out = []
    for name in PRESETS:
        forward, _ = preset_case(name, 1, T, torch.device("cpu"), False)
        flops = model_flops(forward)  # one clip's forward + backward
        rate = H100_BF16_DENSE * GPU_SHARE * 1e12 / flops
        out.append({"preset": name, "gflop_per_clip": flops / 1e9, "clips_per_s": rate,
                    "mib_per_s": rate * CLIP_MIB})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=64, help="clips in each store (4 MiB each)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, os.cpu_count() or 2])
    parser.add_argument("--codecs", nargs="+", default=list(COMPRESSIONS), choices=COMPRESSIONS)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the store")
    parser.add_argument("--dir", type=Path, default=None, help="where the stores go (default: a temp dir)")
    parser.add_argument("--no-gpu-need", action="store_true", help="skip counting the presets' FLOPs")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="hope-store-bench-", dir=args.dir))
    rows, sizes = [], {}
    for codec in args.codecs:
        path = folder / f"{codec}.zarr"
        start = time.perf_counter()
        make_store(path, args.clips, codec)
        sizes[codec] = _du(path) / 2**20
        err.print(f"{codec}: {args.clips} clips written in {time.perf_counter() - start:.1f} s, "
                  f"{sizes[codec]:.0f} MiB on disk", highlight=False)
        array = zarr.open_group(str(path), mode="r")["features"]

        def oindex(batch, array=array):
            return array.oindex[np.sort(np.asarray(batch))]

        cases = [(f"plain zarr", n, plain_reader(array, n)) for n in args.threads]
        cases.append(("plain oindex", 1, oindex))
        for n in args.threads:
            store = FeatureStore.open(path)  # a fresh store: its first pass checks every clip
            cases.append(("hope", n, lambda b, store=store, n=n: loader.read_batch(store, b, threads=n)))
        store = FeatureStore.open(path)
        cases.append(("hope before", 1, lambda b, store=store: _before_read_batch(store, b)))
        for name, n, read in cases:
            rates = passes(read, args.clips, args.batch, args.repeats)
            rows.append({"codec": codec, "reader": name, "threads": n, "clips_per_s": statistics.median(rates),
                         "min": min(rates), "max": max(rates)})
            err.print(f"  {name:12s} {n} thread(s): {rows[-1]['clips_per_s']:.0f} clips/s", highlight=False)
    plain = {(r["codec"], r["threads"]): r["clips_per_s"] for r in rows if r["reader"] == "plain zarr"}
    for r in rows:
        base = plain.get((r["codec"], r["threads"]))
        r["mib_per_s"] = r["clips_per_s"] * CLIP_MIB
        r["share_of_plain"] = r["clips_per_s"] / base if base and r["reader"].startswith("hope") else None

    table = Table(title=f"store reads, {T} x {P} x {D} float16 ({CLIP_MIB:.0f} MiB a clip), batch {args.batch}, "
                        f"{args.clips} clips, page cache warm, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    for col in ("codec", "MiB on disk", "reader", "threads", "clips/s", "spread", "MiB/s", "of plain zarr"):
        table.add_column(col, justify="left" if col in ("codec", "reader") else "right")
    for r in rows:
        table.add_row(r["codec"], f"{sizes[r['codec']]:.0f}", r["reader"], str(r["threads"]),
                      f"{r['clips_per_s']:.0f}", f"{r['min']:.0f}-{r['max']:.0f}", f"{r['mib_per_s']:.0f}",
                      "" if r["share_of_plain"] is None else f"{r['share_of_plain']:.0%}")
    err.print(table)
    fresh = fresh_batch_reads(FeatureStore.open(folder / "none.zarr"), args.batch) if "none" in args.codecs else {}
    if fresh:
        err.print("one thread reading a batch's chunk files into a fresh batch: "
                  + ", ".join(f"{gbs:.1f} GB/s into {name}" for name, gbs in fresh.items()), highlight=False)
    ceiling = {n: copy_ceiling(n) for n in args.threads}
    err.print("memory bandwidth: numpy copies of 64 MiB at "
              + ", ".join(f"{gbs:.1f} GB/s on {n} thread(s)" for n, gbs in ceiling.items()), highlight=False)

    need = [] if args.no_gpu_need else gpu_need()
    if need:
        best = max(r["clips_per_s"] for r in rows if r["reader"] == "hope")
        t2 = Table(title=f"what a GPU step needs: H100 at {GPU_SHARE:.0%} of {H100_BF16_DENSE:.0f} TFLOP/s bf16, "
                         f"one clip = {T} frames, forward + backward; the store gives {best:.0f} clips/s "
                         f"(best hope row above)")
        for col in ("preset", "GFLOP a clip", "clips/s needed", "MiB/s needed", "store / need"):
            t2.add_column(col, justify="left" if col == "preset" else "right")
        for n in need:
            t2.add_row(n["preset"], f"{n['gflop_per_clip']:.0f}", f"{n['clips_per_s']:.0f}",
                       f"{n['mib_per_s']:.0f}", f"{best / n['clips_per_s']:.2f}x")
        err.print(t2)
    if args.json_out:
        args.json_out.write_text(json.dumps({"shape": [T, P, D], "batch": args.batch, "clips": args.clips,
                                             "mib_on_disk": sizes, "reads": rows, "gpu_need": need,
                                             "copy_gb_per_s": ceiling, "fresh_batch_gb_per_s": fresh},
                                            indent=2))
    shutil.rmtree(folder, ignore_errors=True)  # the stores and their writers' lock files


if __name__ == "__main__":
    main()
