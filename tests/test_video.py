"""Video: predict_video round trip (PyAV), Predictor.predict on a video, outputs never over the
input, and the one-line error without PyAV.

The clip is made here with PyAV from generated images. Video codecs are lossy, so a frame's
detections are compared with predicting the *decoded* frame, not the image it was made from.
"""

from __future__ import annotations

import builtins
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ghostdet.errors import InputError, OutputError
from ghostdet.predict import Predictor
from ghostdet.predict.video import iter_frames, predict_video, video_encoder
from tests.test_predictor import _checkpoint

FRAMES, W, H, FPS = 7, 64, 48, 10


def _clip(path: Path, frames: int = FRAMES, width: int = W, height: int = H) -> Path:
    av = pytest.importorskip("av")
    rng = np.random.default_rng(3)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            image[:, : 4 * i] = 255  # a white band that widens: frames differ clearly
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    ckpt = _checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pth")
    return Predictor(ckpt, runtime="eager", device="cpu", score_threshold=0.0, batch_size=3)


def test_predict_video_round_trip(predictor, tmp_path):
    av = pytest.importorskip("av")
    src = _clip(tmp_path / "clip.mp4")
    before = src.read_bytes()
    out_video, out_jsonl = tmp_path / "out" / "clip.mp4", tmp_path / "out" / "clip.jsonl"
    lines: list[str] = []
    result = predict_video(predictor, src, out_video, out_jsonl, progress=False, log=lines.append)
    assert src.read_bytes() == before
    assert len(lines) == 1 and f"{FRAMES} frame(s)" in lines[0] and "frames/s" in lines[0]
    assert (result.width, result.height, result.fps) == (W, H, FPS) and len(result.frames) == FRAMES
    assert sorted(p.name for p in out_video.parent.iterdir()) == ["clip.jsonl", "clip.mp4"]  # no temp files

    # the annotated video: same frame count, size and rate, H.264 when this PyAV encodes it
    with av.open(str(out_video)) as c:
        stream = c.streams.video[0]
        assert stream.average_rate == FPS
        assert stream.codec_context.name == ("h264" if video_encoder() != "mpeg4" else "mpeg4")
        written = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    assert len(written) == FRAMES and all(f.shape == (H, W, 3) for f in written)

    # the JSON lines: one per frame, each frame's detections those of the decoded frame alone
    decoded = list(iter_frames(src))
    docs = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert [d["frame"] for d in docs] == list(range(FRAMES)) == [i for i, _, _ in decoded]
    assert [d["time"] for d in docs] == pytest.approx([i / FPS for i in range(FRAMES)])
    for doc, det, (i, _, frame) in zip(docs, result.frames, decoded):
        alone = predictor.predict(frame)[0]
        assert len(alone) == len(det) == len(doc["detections"]) > 0
        assert torch.allclose(det.boxes, alone.boxes, atol=1e-4)
        assert torch.allclose(torch.tensor([d["box"] for d in doc["detections"]]), alone.boxes, atol=1e-4)
        assert doc["detections"][0]["score"] == pytest.approx(alone.scores[0].item(), abs=1e-4)
        assert (doc["width"], doc["height"], det.frame) == (W, H, i)
    # the boxes are drawn: the annotated frames differ from the decoded input where they are
    assert np.abs(written[0].astype(int) - decoded[0][2].astype(int)).max() > 60

    # Predictor.predict on the video path: the same per-frame detections
    frames = predictor.predict([str(src)])
    assert [d.frame for d in frames] == list(range(FRAMES)) and frames[0].source == str(src)
    for a, b in zip(frames, result.frames):
        assert torch.allclose(a.boxes, b.boxes, atol=1e-4)


def test_odd_sized_video_keeps_its_size(predictor, tmp_path):
    av = pytest.importorskip("av")
    src = _clip(tmp_path / "odd.mkv", frames=2, width=33, height=25)
    out = tmp_path / "out" / "odd.mp4"
    predict_video(predictor, src, out, progress=False, log=None)
    with av.open(str(out)) as c:  # H.264's 4:2:0 needs even sides: written as 4:4:4 instead
        assert (c.streams.video[0].width, c.streams.video[0].height) == (33, 25)
        assert len(list(c.decode(video=0))) == 2


def test_outputs_never_overwrite_the_input(predictor, tmp_path):
    pytest.importorskip("av")
    src = _clip(tmp_path / "clip.mp4", frames=2)
    before = src.read_bytes()
    link = tmp_path / "link.mp4"
    link.symlink_to(src)
    hard = tmp_path / "hard.mp4"
    hard.hardlink_to(src)
    for out_video, out_jsonl in ((src, None), (link, None), (hard, None), (None, src), (None, link)):
        with pytest.raises(OutputError, match="refusing to write"):
            predict_video(predictor, src, out_video, out_jsonl, progress=False, log=None)
    assert src.read_bytes() == before


def test_unreadable_video_is_skipped_or_refused(predictor, tmp_path):
    pytest.importorskip("av")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 20)
    lines: list[str] = []
    p = Predictor(predictor.detector, runtime="eager", device="cpu", score_threshold=0.0, warn=lines.append)
    got = p.predict([bad, np.zeros((32, 32, 3), np.uint8)])
    assert len(got) == 1 and got.skipped == [str(bad)]
    assert len(lines) == 1 and "bad.mp4" in lines[0]
    with pytest.raises(InputError, match="cannot read video") as e:
        predict_video(predictor, bad, tmp_path / "o.mp4", progress=False, log=None)
    assert e.value.argument == "source"
    assert not (tmp_path / "o.mp4").exists()


def test_without_pyav_one_clear_error(predictor, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av" or name.startswith("av."):
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "av", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_av)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 64)
    for call in (
        lambda: predict_video(predictor, clip, tmp_path / "o.mp4", progress=False, log=None),
        lambda: predictor.predict([clip]),
    ):
        with pytest.raises(InputError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and "PyAV" in msg and "pip install ghostdet[video]" in msg


def test_predict_command_on_a_video(predictor, tmp_path, capsys):
    pytest.importorskip("av")
    from ghostdet.cli.main import main

    ckpt = Path(predictor.detector.source)
    src = _clip(tmp_path / "in" / "clip.avi", frames=4)
    image = tmp_path / "in" / "still.png"
    from PIL import Image

    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(image)
    out = tmp_path / "out"
    argv = ["predict", str(ckpt), str(src), str(image), "--output-dir", str(out), "--device", "cpu"]
    code = main([*argv, "--score-threshold", "0", "--batch-size", "3", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "clip.jsonl", "clip.mp4", "detections.json", "still.json", "still.png"
    ]  # fmt: skip
    assert "4 frame(s)" in captured.out and "frames/s" in captured.out and "1 video(s)" in captured.out
    docs = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert [d["frame"] for d in docs] == [0, 1, 2, 3]
    for doc, (_, _, frame) in zip(docs, iter_frames(src)):
        alone = predictor.predict(frame)[0]
        assert torch.allclose(torch.tensor([d["box"] for d in doc["detections"]]), alone.boxes, atol=1e-4)
    assert len(list(iter_frames(out / "clip.mp4"))) == 4
    # the input folder as the output: refused, nothing written
    assert main([*argv[:4], "--output-dir", str(tmp_path / "in"), "--device", "cpu"]) == 2
    assert "holds the input image" in capsys.readouterr().err


def test_predict_command_without_pyav(predictor, tmp_path, capsys, monkeypatch):
    from ghostdet.cli.main import main

    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 64)
    argv = ["predict", predictor.detector.source, str(clip), "--output-dir", str(tmp_path / "o")]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ghostdet predict: error:")
    assert "pip install ghostdet[video]" in err[0]
    assert not (tmp_path / "o").exists()
