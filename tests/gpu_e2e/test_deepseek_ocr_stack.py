"""End to end on a GPU: a tiny DeepSeek-OCR-shaped stack from ``transformers`` (the DeepSeek-V2
decoder with MLA and MoE, and the CLIP vision encoder) with every norm module replaced by a
normswitch module on the triton backend, against the unpatched model."""
import copy

import pytest
import torch
from torch import nn

import normswitch as ns

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
transformers = pytest.importorskip("transformers")
DEV, DTYPE, BACKEND = "cuda", torch.bfloat16, "triton"
PROMPT = [1, 17, 230, 5, 99, 402, 61, 7, 300, 12, 45, 88]


def patch_norms(model: nn.Module, backend: str) -> dict[str, int]:
    """Swap DeepseekV2RMSNorm and nn.LayerNorm modules for normswitch ones (same state_dict)."""
    counts = {"RMSNorm": 0, "LayerNormFP32": 0}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "DeepseekV2RMSNorm":
                new = ns.RMSNorm(child.weight.shape[0], child.variance_epsilon, backend=backend)
                counts["RMSNorm"] += 1
            elif type(child) is nn.LayerNorm:
                new = ns.LayerNormFP32(child.normalized_shape, child.eps, backend=backend)
                counts["LayerNormFP32"] += 1
            else:
                continue
            new.load_state_dict(child.state_dict())
            setattr(parent, name, new.to(device=child.weight.device, dtype=child.weight.dtype))
    return counts


def decoder() -> nn.Module:
    cfg = transformers.DeepseekV2Config(
        vocab_size=512, hidden_size=128, intermediate_size=256, moe_intermediate_size=64,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=64,
        kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
        n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1,
        max_position_embeddings=256)
    torch.manual_seed(0)
    return transformers.DeepseekV2ForCausalLM(cfg).to(DEV, DTYPE).eval()


def vision() -> nn.Module:
    cfg = transformers.CLIPVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                        num_attention_heads=4, image_size=64, patch_size=8)
    torch.manual_seed(0)
    return transformers.CLIPVisionModel(cfg).to(DEV, DTYPE).eval()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def greedy(model: nn.Module, ids: list[int], steps: int = 8) -> list[int]:
    seq = torch.tensor([ids], device=DEV)
    for _ in range(steps):
        nxt = model(seq).logits[0, -1].argmax()
        seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
    return seq[0, len(ids):].tolist()


@torch.no_grad()
def test_decoder_logits_and_greedy_tokens_match():
    ref = decoder()
    ours = copy.deepcopy(ref)
    counts = patch_norms(ours, BACKEND)
    # input, post-attention and MLA q/kv norms per layer, and the final norm
    assert counts["RMSNorm"] == 3 * 4 + 1, counts
    ids = torch.tensor([PROMPT], device=DEV)
    want, got = ref(ids).logits, ours(ids).logits
    assert torch.isfinite(got).all()
    assert rel(got, want) < 2e-2, rel(got, want)
    assert greedy(ours, PROMPT) == greedy(ref, PROMPT)


@torch.no_grad()
def test_clip_vision_encoder_matches():
    ref = vision()
    ours = copy.deepcopy(ref)
    counts = patch_norms(ours, BACKEND)
    assert counts["LayerNormFP32"] == 2 * 2 + 2, counts  # 2 per layer, pre and post
    pixels = torch.randn(2, 3, 64, 64, device=DEV, dtype=DTYPE)
    want, got = ref(pixel_values=pixels), ours(pixel_values=pixels)
    assert rel(got.last_hidden_state, want.last_hidden_state) < 2e-2
    assert rel(got.pooler_output, want.pooler_output) < 2e-2
