"""``nmrladder demo``: the whole product on the embedded default, in a few minutes.

1. Preprocessing: simulate a few SNR ladders with known truth, run METHOD 2.1-3.1, print
   shifts, T_hat and SNR per rung against the truth, plot one ladder with its masks and
   pseudo-truth.
2. The shipped default model: denoise held-out simulated spectra at rung-0 SNR 5 and print
   METHOD 7's table against the truth next to the classical baselines (tuned on a separate
   validation set), with plots; then denoise one whole ladder in series mode.
3. Round trip: train a small model on freshly simulated ladders, export it to ONNX (parity
   checked against torch), write a few spectra as NMR files and denoise the folder with
   the exported model through the file pipeline (`nmrladder denoise`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

DESCRIPTION = (
    "Run the whole product on the embedded default (a few minutes on 2 cores): simulate SNR "
    "ladders with known truth and preprocess them; denoise held-out spectra with the shipped "
    "model and score them against the truth and the classical baselines; then train a small "
    "model, export it to ONNX and denoise a folder of NMR files with it. Tables are printed, "
    "plots and files go to --out."
)
EXAMPLES = """  nmrladder demo                      # everything into ./demo_out
  nmrladder demo --out /tmp/demo --samples 4 --seed 7
  nmrladder demo --skip-training      # stages 1 and 2 only (no training, no export)
"""


def add_arguments(parser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)"
    )
    parser.add_argument("--samples", type=int, default=8, help="ladders to simulate (default: 8)")
    parser.add_argument(
        "--length", type=int, default=16384, help="points per spectrum (default: 16384)"
    )
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (default: 0)")
    parser.add_argument(
        "--test-spectra", type=int, default=48,
        help="held-out spectra the default model is scored on (default: 48)",
    )
    parser.add_argument(
        "--train-steps", type=int, default=400,
        help="steps of the round trip's small training run (default: 400)",
    )
    parser.add_argument(
        "--skip-training", action="store_true", help="skip stage 3 (train, export, denoise)"
    )


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    preprocessing_stage(out, args.samples, args.length, args.seed)
    default_model_stage(out, args.test_spectra, args.seed)
    if not args.skip_training:
        round_trip_stage(out, args.train_steps, args.seed)
    print(f"\ndemo done in {time.perf_counter() - started:.0f} s; plots and files in {out}")
    return 0


def _truth_in_top_frame(ladders, i: int, result) -> np.ndarray:
    """The noise-free spectrum of ladder i in the aligned, centred units of its top rung."""
    from nmrladder.train.simulate import fourier_shift_real

    top = ladders.rungs - 1
    shifted = fourier_shift_real(ladders.truth[i], ladders.shifts[i, top])
    return (shifted - ladders.norm_offset[i, top]) / ladders.norm_scale[i, top] - result.offsets[
        top
    ]


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def preprocessing_stage(out: Path, samples: int, length: int, seed: int) -> None:
    from nmrladder.runtime import SNR_CONVENTION, preprocess_ladders
    from nmrladder.runtime.plots import plot_ladder
    from nmrladder.runtime.table import format_table
    from nmrladder.train.simulate import simulate_ladders

    rungs, T, snr = 4, 2.0, 10.0
    print(
        f"== 1. preprocessing: {samples} simulated ladders, {rungs} rungs, L = {length}, "
        f"T = {T}, rung-0 SNR = {snr}"
    )
    print(f"   SNR convention: {SNR_CONVENTION}")
    started = time.perf_counter()
    ladders = simulate_ladders(samples, rungs, length, T, snr, seed)
    simulated = time.perf_counter()
    results = preprocess_ladders(ladders.x)
    done = time.perf_counter()
    print(f"   simulated in {simulated - started:.2f} s, preprocessed in {done - simulated:.2f} s")

    true_relative = ladders.shifts - ladders.shifts[:, -1:]
    rows = []
    for i in range(samples):
        shift_error = np.abs(results.shifts[i] - true_relative[i])[:-1].max()
        truth = _truth_in_top_frame(ladders, i, results[i])
        rows.append(
            [
                i,
                " ".join(f"{s:+6.2f}" for s in results.shifts[i][:-1]),
                float(shift_error),
                float(results.t_hat[i]),
                float(ladders.T[i]),
                " ".join(f"{s:5.1f}" for s in results.snr[i]),
                _rms(results.s_hat[i] - truth) / _rms(results.aligned[i, -1] - truth),
            ]
        )
    headers = [
        "ladder",
        "shifts vs top (pt)",
        "max |err| (pt)",
        "T_hat",
        "T",
        "SNR per rung (METHOD 2.4)",
        "RMS(s_hat)/RMS(top)",
    ]
    print(format_table(headers, rows, digits=3))
    plot = plot_ladder(
        results[0],
        out / "ladder0.png",
        truth=_truth_in_top_frame(ladders, 0, results[0]),
        ppm=ladders.ppm_axis(0),
        title="ladder 0: aligned rungs, masks and pseudo-truth",
    )
    print(f"   plot: {plot}")


def default_model_stage(out: Path, n_test: int, seed: int) -> None:
    from nmrladder.runtime import Denoiser
    from nmrladder.runtime.plots import plot_denoised
    from nmrladder.runtime.table import format_table
    from nmrladder.train.evaluate import evaluate_denoisers
    from nmrladder.train.simulate import simulate_ladders

    denoiser = Denoiser.default()
    info = denoiser.info
    widths = "-".join(str(w) for w in info.model_config.get("widths", ()))
    print(f"\n== 2. the shipped default model: {Path(denoiser.model_path).name} (U-Net "
          f"{widths}, stem stride {info.model_config.get('stem_stride', 1)}), lengths "
          f"{info.min_length}-{info.max_length} (multiple of {info.length_multiple})")
    snr, length = 5.0, 16384
    started = time.perf_counter()
    # Seeds far from the training sets' (scripts/simulate_sets.sh uses 100-400).
    test = simulate_ladders(n_test, 4, length, 2.0, snr, 9000 + seed, workers=2)
    val = simulate_ladders(max(8, n_test // 4), 4, length, 2.0, snr, 9500 + seed, workers=2)
    plots = out / "default_model"
    report = evaluate_denoisers({"default model": denoiser}, {f"snr{snr:g}": test}, val,
                                plot_dir=plots, n_plots=1)
    print(f"   {n_test} held-out spectra at rung-0 SNR {snr:g}, L = {length}, against the truth "
          f"(baselines tuned on {len(val)} other spectra); {time.perf_counter() - started:.0f} s")
    print(report.table())
    print(f"   plots: {plots}")

    ladder = test.x[0]
    series = denoiser.denoise_series(ladder)
    rows = [[k, float(series.snr[k]), float(series.weights[k]), float(series.shifts[k])]
            for k in range(ladder.shape[0])]
    print(f"\n   series mode on ladder 0 ({ladder.shape[0]} rungs): T_hat = {series.t_hat:.2f} "
          f"(true {test.T[0]:.2f})")
    print(format_table(["rung", "SNR in", "fusion weight", "shift (pt)"], rows, digits=3))
    path = plot_denoised(ladder[-1] - np.median(ladder[-1]), series.fused, out / "series0.png",
                         ppm=test.ppm_axis(0), title="ladder 0: top rung and fused output")
    print(f"   plot: {path}")


def round_trip_stage(out: Path, steps: int, seed: int) -> None:
    from nmrladder.cli import main as cli
    from nmrladder.runtime import Denoiser
    from nmrladder.runtime.io import Spectrum, write_spectrum
    from nmrladder.runtime.pipeline import DenoiseJob
    from nmrladder.train.config import CONFIG_DIR
    from nmrladder.train.simulate import simulate_ladders

    print(f"\n== 3. round trip: train a small model ({steps} steps), export it, denoise files")
    trip = out / "round_trip"
    run_dir = trip / "run"
    if run_dir.exists():  # a previous demo's run: start it again
        import shutil

        shutil.rmtree(run_dir)
    length = 4096
    started = time.perf_counter()
    data = trip / "train.h5"
    ladders = simulate_ladders(256, 4, length, (1.5, 3.0), 8.0, 7000 + seed, workers=2)
    ladders.save(data)
    # The CPU recipe on a smaller U-Net, plus a short METHOD stage B to show both stages.
    overrides = [
        "model.depth=3", "model.widths=[16, 32, 32]", "model.dilations=[1, 2, 4]",
        "data.crop_length=1024", "optim.warmup_steps=50", "run.threads=2",
        "run.checkpoint_every=0", f"stage_a.steps={max(1, steps * 3 // 4)}",
        f"stage_b.steps={max(1, steps // 4)}",
    ]
    args = ["train", "--config", str(CONFIG_DIR / "cpu_recipe.toml"), "--data", str(data),
            "--out", str(run_dir), "--export", str(trip), "--export-name", "small",
            "--no-progress"]
    for value in overrides:
        args += ["--set", value]
    code = cli(args)
    if code:
        raise RuntimeError(f"the round trip's training failed (exit status {code})")
    print(f"   trained and exported in {time.perf_counter() - started:.0f} s")

    files = trip / "spectra"
    files.mkdir(exist_ok=True)
    fresh = simulate_ladders(6, 2, length, 2.0, 6.0, 7500 + seed)
    for i in range(len(fresh)):
        spectrum = Spectrum(fresh.x[i, 0], ppm=fresh.ppm_axis(i))
        write_spectrum(spectrum, files / f"sample{i}.{'npz' if i % 2 else 'csv'}")
    job = DenoiseJob(Denoiser(trip / "small.onnx", threads=2), trip / "denoised", progress=False)
    summary = job.run(sorted(files.iterdir()))
    print(summary.table())
    print(f"   {len(summary.results) - len(summary.failed)} of {len(summary.results)} files "
          f"denoised into {trip / 'denoised'} in {summary.wall_seconds:.1f} s")
