"""Image sizes and start-to-ready times of every helper image, under podman.

    .venv/bin/python bench/bench_images.py [--quick] [--runs N]

Builds the images if the tree changed (as the e2e tests do), then prints per image:
its size, what it adds over the base image (its own layers), and the median time from
`podman run` to the first 200 of /readyz, next to the same measurement for the simplest
Python HTTP server (`python3 -m http.server`) in the same base image: the floor that
podman and the interpreter set. Targets: under 30 MB over the base, ready in
under 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import BASE_IMAGE, READY_PATH, SMOKE_ARGS, Podman, image_ref

OPTIONS = ("--read-only", "--network", "none", "--cap-drop", "ALL")


def size(podman: Podman, image: str) -> int:
    return int(podman.inspect_image(image)["Size"])  # type: ignore[index]


def own_layers(podman: Podman, image: str) -> list[int]:
    """Sizes of the layers the image has on top of the base image."""
    base = {layer for layer in podman.inspect_image(BASE_IMAGE)["RootFS"]["Layers"]}  # type: ignore[index]
    history = json.loads(podman.out("history", "--format", "json", "--no-trunc", image))
    mine = [h for h in history if h.get("size", 0) > 0]
    return [h["size"] for h in mine][: max(0, len(mine) - len(base))]


def start_to_ready(
    podman: Podman, image: str, args: tuple[str, ...], port: int, path: str
) -> float:
    start = time.monotonic()
    with podman.container(image, *args, options=OPTIONS) as container:
        ready = podman.wait_ready(container, port, path)
    return ready - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per image")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    podman = Podman()
    specs = podman.build_helpers()
    base_size = size(podman, BASE_IMAGE)

    def floor() -> float:
        return start_to_ready(
            podman, BASE_IMAGE, ("python3", "-m", "http.server", "8000"), 8000, "/"
        )

    print(f"base image {BASE_IMAGE}: {base_size / 1e6:.1f} MB; {runs} runs per image, medians")
    header = (
        f"{'image':<28} {'size MB':>8} {'over base MB':>13} {'own layers MB':>14} "
        f"{'ready s':>8} {'http.server s':>14} {'ratio':>6}  probe"
    )
    print(header)
    print("-" * len(header))
    for spec in specs:
        image = image_ref(spec.helper)
        total = size(podman, image)
        helper_times, floor_times = [], []
        args = (*SMOKE_ARGS.get(spec.helper, ()), "--shutdown-timeout", "1s")
        path = READY_PATH.get(spec.helper, "/readyz")
        for _ in range(runs):  # interleaved, so both see the same machine load
            helper_times.append(start_to_ready(podman, image, args, spec.admin_port, path))
            floor_times.append(floor())
        layers = " + ".join(f"{n / 1e6:.1f}" for n in own_layers(podman, image))
        ready, reference = statistics.median(helper_times), statistics.median(floor_times)
        print(
            f"{image:<28} {total / 1e6:>8.1f} {(total - base_size) / 1e6:>13.1f} {layers:>14} "
            f"{ready:>8.2f} {reference:>14.2f} {ready / reference:>6.2f}  {path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
