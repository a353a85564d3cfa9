"""dev: replay recorded M1 freqs through the mixer; args: mixer disable [files]"""
import sys, time, json
import numpy as np
from terse.textcomp.compressor import LEVELS, _mix_frame
mixer, disable = int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else ""
files = sys.argv[3].split(",") if len(sys.argv) > 3 else None
names = ["calgary_bib","calgary_book1","calgary_book2","calgary_news","calgary_paper1","calgary_paper2","calgary_paper3",
         "calgary_paper4","calgary_paper5","calgary_paper6","canterbury_alice29","canterbury_asyoulik","canterbury_lcet10","canterbury_plrabn12"]
if files: names = [n for n in names if any(f in n for f in files)]
import os
params = LEVELS[3].params.replace(mixer=mixer, disable=disable, counter_limit=int(os.environ.get("CL", 255)), mixer_rate=int(os.environ.get("LR", 8)))
tot_b = tot_n = 0; t0 = time.perf_counter(); out = {}
for n in names:
    m = np.load(f"/work/runs/cmdev/{n}.meta.npz"); fr = np.load(f"/work/runs/cmdev/{n}.freqs.npy", mmap_mode="r")
    bits = 8 * len(_mix_frame(None, params, m["matrix"].copy(), m["lengths"], None, None, replay=fr))
    out[n.split("_")[1]] = round(bits / int(m["n"]), 4); tot_b += bits; tot_n += int(m["n"])
print(f"mixer={mixer} disable={disable!r} total={tot_b/tot_n:.4f} {time.perf_counter()-t0:.0f}s", json.dumps(out), flush=True)
