"""Syntheses per pair showing a class: w-space screening (32 candidates, best 4 synthesised) vs rejection.

python scripts/targeting-cost.py   # viton64-lip12, psi 1, skirt/coat/dress/legs, 64 pairs each, one thread
"""

import time

import torch

from styleseg.generate import level_class_map
from styleseg.models.zoo import load_model
from styleseg.sampling import synthesize
from styleseg.targeting import ClassTargeter, class_ids_for

torch.set_num_threads(1)
dev = torch.device("cpu")
m = load_model("viton64-lip12", dev)
st = m.growth
names = ["skirt", "coat", "dress", "legs"]


def synth(seeds):
    with torch.no_grad():
        return synthesize(m.G, seeds, st.stage, st.alpha, st.seg_level, 1.0, dev).seg.argmax(1)


ids = class_ids_for(names, level_class_map(m).classes)
t = ClassTargeter(m.G, synth, lambda s: torch.ones(len(s)), ids, names)
t.fit()
print(t.describe())
for j, n in enumerate(names):
    start = time.perf_counter()
    c = t.draw([j] * 64, [10**9 + k * 2**20 for k in range(64)])
    dt = time.perf_counter() - start
    print(
        f"{n}: base rate {t.base_rate[j]:.3f} -> rejection needs {1 / t.base_rate[j]:.1f} syntheses per pair; "
        f"screening: {c.syntheses / 64:.1f} syntheses ({c.screened / 64:.0f} candidates screened) per pair, "
        f"{dt / 64 * 1000:.0f} ms per pair"
    )
