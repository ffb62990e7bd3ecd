import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.encoders import (ClipEncoder, VGGishEncoder, WeightsError, clip_preprocess, log_mel, mel_matrix,
                               register_model_configs, vggish_examples)
from pipeline.extract import EncoderSpec, load_encoders, resolve_weights

from .conftest import SAMPLES, need, tiny_config


def _test_wav() -> np.ndarray:
    wav, sr = sf.read(need(SAMPLES / "audio" / "torchvggish_test.wav"), dtype="int16")
    assert sr == 16000
    return wav / 32768.0


def test_log_mel_matches_torchvggish_numpy_within_1e4():
    from torchvggish import mel_features, vggish_input

    x = _test_wav()
    ref = mel_features.log_mel_spectrogram(x, audio_sample_rate=16000, log_offset=0.01, window_length_secs=0.025,
                                           hop_length_secs=0.010, num_mel_bins=64, lower_edge_hertz=125,
                                           upper_edge_hertz=7500)
    ours = log_mel(torch.tensor(x, dtype=torch.float32)[None])[0].numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4
    # one 96 x 64 example per 1-second piece, as torchvggish frames each piece on its own
    n = len(x) // 16000
    ex = vggish_examples(torch.tensor(x[: n * 16000], dtype=torch.float32)[None], n)
    ref_ex = np.stack([vggish_input.waveform_to_examples(x[k * 16000:(k + 1) * 16000], 16000, False)[0]
                       for k in range(n)])
    assert ex.shape == (n, 1, 96, 64)
    assert np.abs(ex[:, 0].numpy() - ref_ex).max() < 1e-4
    assert np.allclose(mel_matrix(16000), mel_features.spectrogram_to_mel_matrix(
        num_mel_bins=64, num_spectrogram_bins=257, audio_sample_rate=16000, lower_edge_hertz=125,
        upper_edge_hertz=7500), atol=1e-12)


def test_vggish_embedding_t_depends_only_on_second_t():
    torch.manual_seed(0)
    enc = VGGishEncoder(None)
    audio = torch.randn(2, 5 * 16000) * 0.1
    base = enc(audio, T=5)
    assert base.shape == (2, 5, 128)
    changed = audio.clone()
    changed[1, 3 * 16000:4 * 16000] = torch.randn(16000) * 0.3
    out = enc(changed, T=5)
    diff = (out - base).abs().amax(-1)
    assert torch.equal(out[0], base[0])
    assert diff[1, 3] > 0 and torch.all(diff[1, [0, 1, 2, 4]] < 1e-6)


def test_vggish_loads_local_weights(tmp_path):
    torch.manual_seed(3)
    ref = VGGishEncoder(None)
    torch.save(ref.net.state_dict(), tmp_path / "vggish.pth")
    torch.manual_seed(4)
    loaded = VGGishEncoder(str(tmp_path / "vggish.pth"))
    audio = torch.randn(1, 2 * 16000) * 0.1
    assert torch.equal(loaded(audio, 2), ref(audio, 2))


def test_clip_preprocess_matches_open_clip_pil_transform():
    import open_clip
    from PIL import Image

    register_model_configs()
    img = Image.open(need(SAMPLES / "avsbench" / "s4" / "0.jpg")).convert("RGB")
    _, _, pil_tf = open_clip.create_model_and_transforms("avu-tiny-clip", pretrained=None)
    ref = pil_tf(img)                                           # (3, 64, 64)
    ours = clip_preprocess(torch.from_numpy(np.array(img))[None], 64, open_clip.OPENAI_DATASET_MEAN,
                           open_clip.OPENAI_DATASET_STD)[0]
    assert ours.shape == ref.shape
    assert (ours - ref).abs().mean() < 0.02


def test_clip_patch_tokens_are_projected_and_pooled():
    torch.manual_seed(0)
    native = ClipEncoder("avu-tiny-clip", None, patch_grid=0)
    torch.manual_seed(0)
    pooled = ClipEncoder("avu-tiny-clip", None, patch_grid=4)
    x = torch.randn(3, 3, 64, 64)
    cls, tokens = native.encode_frames(x)
    cls2, tokens4 = pooled.encode_frames(x)
    assert cls.shape == (3, 64) and tokens.shape == (3, 64, 64) and tokens4.shape == (3, 16, 64)
    assert torch.allclose(cls, cls2)
    # projection: the visual tower's tokens times visual.proj (the joint space of text)
    native.model.visual.output_tokens = True
    _, raw = native.model.visual(x)
    assert torch.allclose(tokens, raw @ native.model.visual.proj, atol=1e-5)
    # pooling: each 4x4 cell is the mean of a 2x2 block of the native 8x8 grid
    grid = tokens.reshape(3, 8, 8, 64)
    for r in range(4):
        for c in range(4):
            block = grid[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2].reshape(3, 4, 64).mean(1)
            assert torch.allclose(tokens4[:, r * 4 + c], block, atol=1e-5)
    text = native.encode_text(["a dog barking", "a violin", "what is left of the cello?"])
    assert text.shape == (3, 64) and torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_missing_weights_say_which_file_and_where(tmp_path):
    cfg = tiny_config(random_weights=False, clip_weights=str(tmp_path / "clip.pt"),
                      vggish_weights=str(tmp_path / "vggish.pth"))
    with pytest.raises(WeightsError, match=r"clip\.pt.*clip_weights=PATH.*--random-weights"):
        resolve_weights(cfg, "cpu")
    (tmp_path / "clip.pt").write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"vggish\.pth.*vggish-10086976\.pth"):
        resolve_weights(cfg, "cpu")


def test_local_weight_files_are_hashed_and_random_weights_are_seeded(tmp_path):
    torch.manual_seed(1)
    import open_clip

    torch.save(open_clip.create_model("avu-tiny-clip").state_dict(), tmp_path / "clip.pt")
    torch.save(VGGishEncoder(None).net.state_dict(), tmp_path / "vggish.pth")
    cfg = tiny_config(random_weights=False, clip_weights=str(tmp_path / "clip.pt"),
                      vggish_weights=str(tmp_path / "vggish.pth"))
    spec, prov = resolve_weights(cfg, "cpu")
    assert len(prov["clip"]["sha256"]) == 64 and prov["vggish"]["weights"] == "vggish.pth"
    clip, _ = load_encoders(spec)
    saved = torch.load(tmp_path / "clip.pt")
    assert torch.equal(clip.model.visual.proj, saved["visual.proj"])
    rspec, rprov = resolve_weights(tiny_config(), "cpu")
    assert rprov["clip"]["weights"] == "random" and rspec.clip_weights is None
    a, _ = load_encoders(rspec)
    load_encoders.cache_clear()
    b, _ = load_encoders(EncoderSpec(**{**rspec.__dict__}))
    assert torch.equal(a.model.visual.proj, b.model.visual.proj)   # same random model in every worker


def test_vggish_encoder_equals_torchvggish_network():
    from torchvggish.torchvggish import _vgg

    torch.manual_seed(0)
    ours = VGGishEncoder(None)                    # channels-last, batched
    torch.manual_seed(0)
    ref = _vgg(postprocess=False).eval()
    audio = torch.randn(3, 4 * 16000) * 0.1
    with torch.inference_mode():
        expected = ref(vggish_examples(audio, 4)).reshape(3, 4, 128)
    assert torch.allclose(ours(audio, 4), expected, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_encoders_stay_close_to_fp32(precision):
    """bf16 / fp16 change the arithmetic, not the model: float32 outputs within a few parts in
    a thousand of the fp32 encoders (relative L2), and not bit-equal (the setting took effect)."""
    torch.manual_seed(0)
    audio, pixels = 0.1 * torch.randn(2, 10 * 16000), torch.randn(4, 3, 64, 64)
    out = {}
    for p in ("fp32", precision):
        torch.manual_seed(1)
        vggish = VGGishEncoder(None, precision=p)
        torch.manual_seed(2)
        clip = ClipEncoder("avu-tiny-clip", None, patch_grid=4, precision=p)
        out[p] = (vggish(audio, 10), *clip.encode_frames(pixels))
        if p != "fp32":
            assert next(vggish.net.parameters()).dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[p]
            assert next(clip.model.parameters()).dtype == torch.float32     # CLIP: autocast, weights kept
    for ref, low in zip(out["fp32"], out[precision]):
        assert low.dtype == torch.float32 and low.shape == ref.shape
        rel = ((low - ref).norm() / ref.norm()).item()
        assert 1e-6 < rel < (2e-2 if precision == "bf16" else 3e-3), rel


def test_unknown_precision_is_refused_before_any_work():
    with pytest.raises(ValueError, match="precision 'fp8': expected one of fp32, bf16, fp16"):
        resolve_weights(tiny_config(precision="fp8"), "cpu")
