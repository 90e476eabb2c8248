"""Build the ultrasound backbone shipped in the package (src/sonokit/weights) from the real development sets.

    python benchmarks/bench_pretrain.py --method supervised --only all     # pretrain (resumable, ~4 min, 2 cores)
    python benchmarks/make_backbone.py                                      # copy it into the package with its card
    python benchmarks/bench_pretrain.py --method supervised --only all --model resnet10_w32   # the same for
    python benchmarks/make_backbone.py --model resnet10_w32                                   # classify's network

The backbone is `sonokit pretrain --method supervised` on every labelled real set in ../shared/data (BUS-BRA
benign/malignant, the fetal-plane subset's 6 planes, HC18 head-circumference quartiles), the classify defaults'
network (tinycnn or resnet10_w32, 1 channel, 96 px), for `train --init ultrasound`. Every set's licence allows redistributing
derived work with attribution; the card names each set, its licence and the citation it asks for. Measured
transfer (README, "Shipped backbone") is from backbones pretrained the same way WITHOUT the evaluated set
(bench_pretrain.py's sup-without-*), never from this file, which has seen every development set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_pretrain import run_folder  # noqa: E402
from sonokit.models.shipped import CARD_KEY, SHIPPED  # noqa: E402
from sonokit.utils.atomic import atomic_path  # noqa: E402

WEIGHTS = ROOT / "src" / "sonokit" / "weights"

DATA = [
    {
        "set": "BUS-BRA (breast, 4 scanners, Brazil)",
        "labels": "Pathology: benign / malignant (biopsy-proven)",
        "licence": "BUS-BRA licence (use, copy, modify, distribute with the copyright notice; cite the article)",
        "cite": "W. Gomez-Flores, M. J. Gregorio-Calas, W. C. de Albuquerque Pereira, BUS-BRA: A Breast Ultrasound "
        "Dataset for Assessing Computer-aided Diagnosis Systems, Medical Physics, 2023",
    },
    {
        "set": "FETAL_PLANES_DB subset (120 images)",
        "labels": "plane: abdomen, brain, cervix, femur, thorax, other",
        "licence": "CC BY 4.0 (FETAL_PLANES_DB); subset redistributed under MIT (c) 2023 Fangyijie Wang",
        "cite": "X. P. Burgos-Artizzu et al., Evaluation of deep convolutional neural networks for automatic "
        "classification of common maternal fetal ultrasound planes, Scientific Reports 10, 10200 (2020)",
    },
    {
        "set": "HC18 (fetal heads, subjects 000-299)",
        "labels": "head circumference quartile (hc-q1..hc-q4)",
        "licence": "CC BY 4.0 (Zenodo 1327317)",
        "cite": "T. L. A. van den Heuvel et al., Automated measurement of fetal head circumference using 2D "
        "ultrasound images, PLoS ONE 13(8): e0200412 (2018)",
    },
]


def main() -> None:
    from safetensors.torch import load_file, save

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tinycnn", choices=sorted({m for m, _ in SHIPPED}))
    model = parser.parse_args().model
    run = run_folder("all", supervised=True, model=model)
    dest = WEIGHTS / SHIPPED[(model, 1)]
    src = run / "backbone.safetensors"
    if not src.is_file():
        raise SystemExit(
            f"{src}: run `python benchmarks/bench_pretrain.py --method supervised --only all --model {model}` first"
        )
    tensors = load_file(str(src))
    if model != "tinycnn":  # half the wheel's size; loading casts back to the network's float32
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    card = json.loads((run / "pretrain_card.json").read_text())
    card.update(
        name=dest.stem,
        data=DATA,
        licences="every source allows redistribution of derived work with attribution (see data)",
        use=f"sonokit train TASK --model {model} --init ultrasound (1 input channel; the head starts from scratch)",
        sha256_of_tensors=hashlib.sha256(
            b"".join(t.numpy().tobytes() for _, t in sorted(tensors.items()))
        ).hexdigest(),
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(save(tensors, metadata={CARD_KEY: json.dumps(card)}))
    print(
        f"{dest} ({dest.stat().st_size / 1e3:.0f} kB, {len(tensors)} tensors, {card['epochs_done']} epochs)"
    )


if __name__ == "__main__":
    main()
