"""avdigits: the shipped file, its loader, the numpy log-mel features and the generator."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nbkit.data import avdigits as av
from nbkit.data import load_avdigits

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
N = 5000


@pytest.fixture(scope="module")
def shipped():
    return load_avdigits()


def test_checksum_matches_constant_and_readme():
    assert av.file_sha256(DATA / "avdigits.npz") == av.SHA256
    assert av.SHA256 in (DATA / "README.md").read_text()
    load_avdigits(check=True, n=100)  # the loader's own check passes too


def test_file_arrays_have_documented_shapes_and_dtypes():
    with np.load(DATA / "avdigits.npz", allow_pickle=False) as z:
        expect = {"image": (np.uint8, (N, 28, 28)), "label": (np.uint8, (N,)), "clip_digit": (np.uint8, (N,)),
                  "audio": (np.float16, (N, 32, 32)), "n_word_frames": (np.uint8, (N,)),
                  "voice": (np.uint8, (N,)), "accent": (np.uint8, (N,)), "gender": (np.uint8, (N,)),
                  "speed": (np.int16, (N,)), "pitch": (np.int16, (N,)), "mnist_index": (np.int16, (N,))}
        for k, (dt, shape) in expect.items():
            assert z[k].dtype == dt and z[k].shape == shape, k
        assert np.bincount(z["label"]).tolist() == [500] * 10
        assert len(set(z["mnist_index"].tolist())) == N          # every MNIST digit used once
        assert z["voice"].max() == 23 and len(z["voice_names"]) == 24
        assert set(np.unique(z["speed"])) <= set(range(130, 251))
        assert set(np.unique(z["pitch"])) <= set(range(20, 81))
        assert np.isfinite(z["audio"].astype(np.float32)).all()
    assert (DATA / "avdigits.npz").stat().st_size < 8e6


def test_loader_shapes_dtypes_factors(shipped):
    ds = shipped
    assert ds.dims() == {"image": (784,), "audio": (32, 32)}
    assert ds.x["image"].dtype == torch.float32 and ds.x["audio"].dtype == torch.float32
    assert 0.0 <= float(ds.x["image"].min()) and float(ds.x["image"].max()) <= 1.0
    assert ds.y.dtype == torch.long and ds.class_names == [str(d) for d in range(10)]
    assert torch.equal(ds.factors["digit"], ds.y)
    for k in ("voice", "accent", "gender", "index"):
        assert ds.factors[k].dtype == torch.long
    # voice id determines accent and gender: 4 accents x 6 variants (m, m, m, f, f, f)
    v = ds.factors["voice"]
    assert torch.equal(ds.factors["accent"], v // 6)
    assert torch.equal(ds.factors["gender"], (v % 6 >= 3).long())
    # each mel band standardized over the file
    a = ds.x["audio"].reshape(-1, 32)
    assert torch.allclose(a.mean(0), torch.zeros(32), atol=1e-3) and torch.allclose(a.std(0), torch.ones(32), atol=1e-2)
    flat = load_avdigits(audio="flat", n=50)
    assert flat.dims()["audio"] == (1024,)
    assert ds.info["provenance"]["generator"] == "scripts/make_avdigits.py"


def test_image_and_audio_labels_agree_per_pair(shipped):
    """Each example WAV, featurized again, is nearest to its own row, and its word is y."""
    with np.load(DATA / "avdigits.npz") as z:
        assert np.array_equal(z["clip_digit"], z["label"])
        raw = z["audio"].astype(np.float32).reshape(N, -1)
    ex = av.example_wavs()
    assert len(ex) == 20
    for idx, path in ex:
        word = re.match(r"\d+_([a-z]+)\.wav", path.name).group(1)
        assert av.WORDS.index(word) == int(shipped.y[idx])
        wave, sr = av.read_wav(path)
        assert sr == 16000 and wave.ndim == 1
        f, n_word = av.clip_features(wave, sr)
        assert np.argmin(((raw - f.reshape(1, -1)) ** 2).sum(1)) == idx
        assert abs(n_word * 0.032 - float(shipped.factors["duration"][idx])) < 0.07


def test_audio_carries_the_digit_and_speaker_image_does_not(shipped):
    from sklearn.linear_model import RidgeClassifier

    ds = shipped
    tr, te = slice(0, 1500), slice(1500, 2500)
    a = ds.x["audio"].reshape(len(ds), -1).numpy()
    img = ds.x["image"].numpy()
    y, g = ds.y.numpy(), ds.factors["gender"].numpy()
    acc = lambda X, t: RidgeClassifier(alpha=10.0).fit(X[tr], t[tr]).score(X[te], t[te])  # noqa: E731
    assert acc(a, y) > 0.95          # every clip says its image's digit
    assert acc(a, g) > 0.95          # the voice variant's gender is audible
    assert acc(img, g) < 0.6         # ... and invisible in the handwriting


@pytest.mark.parametrize("sr,freq", [(16000, 1000.0), (16000, 300.0), (22050, 2500.0)])
def test_logmel_sine_peaks_in_the_right_band(sr, freq):
    t = np.arange(sr) / sr
    f = av.logmel(np.sin(2 * np.pi * freq * t), sr, n_mels=32)
    centres = av.mel_frequencies(32, 50.0, 8000.0)
    assert f.shape == (1 + (sr - round(0.05 * sr)) // round(0.032 * sr), 32) and f.dtype == np.float32
    assert np.all(f.argmax(1) == np.argmin(np.abs(centres - freq)))


def test_logmel_and_filterbank_errors():
    fb = av.mel_filterbank(16000, 1024, 32, 50.0, 8000.0)
    assert fb.shape == (32, 513) and fb.max() <= 1.0 + 1e-9 and (fb.sum(1) > 0).all()
    with pytest.raises(ValueError, match="wave"):
        av.logmel(np.zeros((2, 100)), 16000)
    with pytest.raises(ValueError, match="sr"):
        av.logmel(np.zeros(100), 0)
    with pytest.raises(ValueError, match="NaN"):
        av.logmel(np.array([0.0, np.nan] * 500), 16000)
    with pytest.raises(ValueError, match="fmax"):
        av.mel_filterbank(16000, 1024, 32, 50.0, 9000.0)
    with pytest.raises(TypeError, match="unknown feature settings"):
        av.clip_features(np.zeros(1000), 16000, n_mel=4)
    assert av.logmel(np.zeros(10), 16000).shape == (1, 32)     # shorter than a window: one frame


def test_missing_file_error_names_path_and_fix(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "avdigits.npz")) + ".*make_avdigits"):
        load_avdigits(tmp_path)
    bundled = av.avdigits_path()
    # NBKIT_DATA names a folder of the user's data sets: its avdigits.npz is used when there,
    # the bundled file otherwise (a folder of OULAD tables need not hold avdigits)
    monkeypatch.setenv("NBKIT_DATA", str(tmp_path / "elsewhere"))
    assert av.avdigits_path() == bundled
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "avdigits.npz").symlink_to(bundled)
    monkeypatch.setenv("NBKIT_DATA", str(mine))
    assert av.avdigits_path() == mine / "avdigits.npz"
    assert load_avdigits(n=20).info["source"] == str(mine / "avdigits.npz")
    monkeypatch.setenv("NBKIT_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="avdigits_wav"):
        av.example_wavs()


def test_image_noise_is_seeded_and_only_touches_images():
    clean = load_avdigits(n=200)
    a = load_avdigits(n=200, image_noise=0.5, seed=0)
    b = load_avdigits(n=200, image_noise=0.5, seed=0)
    assert torch.equal(a.x["image"], b.x["image"])
    assert torch.equal(a.x["audio"], clean.x["audio"]) and torch.equal(a.y, clean.y)
    d = a.x["image"] - clean.x["image"]
    assert abs(float(d.std()) - 0.5) < 0.01 and abs(float(d.mean())) < 0.01
    full0, full1 = (load_avdigits(image_noise=0.5, seed=s).x["image"][:300] for s in (0, 1))
    assert not torch.allclose(full0, full1, atol=0.1)               # another seed, other noise
    with pytest.raises(ValueError, match="image_noise"):
        load_avdigits(image_noise=-1.0)
    with pytest.raises(ValueError, match="audio"):
        load_avdigits(audio="wave")
    with pytest.raises(ValueError, match="n must be"):
        load_avdigits(n=3)


def test_subset_is_stratified_and_indexed(shipped):
    s = load_avdigits(n=100, seed=3)
    assert np.bincount(s.y.numpy()).tolist() == [10] * 10
    idx = s.factors["index"]
    assert torch.equal(s.x["image"], shipped.x["image"][idx]) and torch.equal(s.factors["voice"], shipped.factors["voice"][idx])
    assert not torch.equal(load_avdigits(n=100, seed=4).factors["index"], idx)


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng is not installed: cannot regenerate avdigits (apt-get install espeak-ng)")
def test_regenerate_tiny_version_with_espeak(tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}" / "avdigits.npz"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_avdigits.py"), "--n", "20", "--out", str(out),
                        "--n-wav", "1", "--no-progress"], check=True, capture_output=True, timeout=120)
        outs.append(out)
    assert av.file_sha256(outs[0]) == av.file_sha256(outs[1])     # same seed, same bytes
    ds = load_avdigits(outs[0], check=False)          # another build: not the shipped checksum
    assert len(ds) == 20 and ds.dims() == {"image": (784,), "audio": (32, 32)}
    assert np.bincount(ds.y.numpy()).tolist() == [2] * 10
    ex = av.example_wavs(outs[0])
    assert len(ex) == 10 and all(p.is_file() for _, p in ex)
    assert sorted(int(ds.y[i]) for i, _ in ex) == list(range(10))


# --------------------------------------------------------------------------- integrity (issue 14)
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("avbad")
    raw = (DATA / "avdigits.npz").read_bytes()
    (d / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF
    (d / "flip.npz").write_bytes(bytes(flipped))
    (d / "empty.npz").write_bytes(b"")
    with np.load(DATA / "avdigits.npz") as z:
        arrs = {k: z[k] for k in z.files}
    np.savez(d / "perm.npz", **{**arrs, "label": np.random.default_rng(0).permutation(arrs["label"])})
    np.savez(d / "nolabel.npz", **{k: v for k, v in arrs.items() if k != "label"})
    return d


def test_checksum_is_verified_by_default_and_names_file_and_fix(bad_files):
    p = bad_files / "perm.npz"                     # readable, same shapes, labels permuted
    with pytest.raises(ValueError) as info:
        load_avdigits(p, n=100)
    msg = str(info.value)
    assert str(p) in msg and av.SHA256 in msg and av.file_sha256(p) in msg
    assert "make_avdigits.py" in msg and "check=False" in msg
    # what the check prevents: with it off the file loads, and its labels are wrong
    wrong = load_avdigits(p, check=False)
    assert not torch.equal(wrong.y, load_avdigits().y)


@pytest.mark.parametrize("name,why", [("trunc.npz", "BadZipFile"), ("flip.npz", "CRC"), ("empty.npz", "EOFError")])
def test_corrupt_files_are_clear_errors_with_the_path(bad_files, name, why):
    p = bad_files / name
    with pytest.raises(ValueError, match=re.escape(str(p)) + r".*has sha256"):
        load_avdigits(p)                                                 # default: the checksum catches it
    with pytest.raises(ValueError, match=re.escape(str(p)) + rf"' could not be read \(.*{why}.*truncated, corrupted.*make_avdigits"):
        load_avdigits(p, check=False)                                    # unchecked: still no raw BadZipFile


def test_a_file_without_the_avdigits_arrays_is_named(bad_files):
    with pytest.raises(ValueError, match=r"nolabel.npz' lacks the arrays \['label'\]"):
        load_avdigits(bad_files / "nolabel.npz", check=False)


def test_verification_hashes_a_file_once_and_numpy_numbers_are_accepted(monkeypatch):
    calls = []
    real = av.file_sha256
    monkeypatch.setattr(av, "_VERIFIED", {})
    monkeypatch.setattr(av, "file_sha256", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        av.verify_avdigits()
    assert len(calls) == 1
    ds = load_avdigits(image_noise=np.float64(0.5), n=np.int64(50), seed=np.int32(1))
    assert len(ds) == 50 and ds.info["image_noise"] == 0.5
    ref = load_avdigits(image_noise=0.5, n=50, seed=1)
    assert torch.equal(ds.x["image"], ref.x["image"])
