import sys, time, dataclasses
import numpy as np, torch
sys.path.insert(0, "/work/main/benchmarks")
from bench_textcomp_adaptive import record_frequencies
from terse.core.paths import data_path
from terse.textcomp.compressor import LEVELS, prepare_frame
from terse.textcomp.model import load_byte_lm
torch.set_num_threads(1)
level = LEVELS[3]
level = dataclasses.replace(level, params=level.params.replace(threads=1))
lm = load_byte_lm(level.model)
for path in sorted(data_path("text", "bench").iterdir()):
    frame = prepare_frame(level.params, path.read_bytes())[1]
    t = time.perf_counter()
    lengths, matrix, rec = record_frequencies(lm, level.params, frame)
    np.save(f"/work/runs/cmdev/{path.stem}.freqs.npy", rec)
    np.savez(f"/work/runs/cmdev/{path.stem}.meta.npz", lengths=lengths, matrix=matrix, n=len(frame))
    print(path.stem, len(frame), time.perf_counter() - t, flush=True)
