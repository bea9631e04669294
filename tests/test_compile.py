"""Every op traces as a torch.library custom op: torch.compile(fullgraph=True) on CPU matches eager."""
import torch

import normswitch as ns


def every_op(x, r, w, b, z, img, wc, bc):
    a = ns.rms_norm(x, w, 1e-6)
    g = ns.rms_norm(x, w, 1e-6, weight_offset=1.0)
    y, s = ns.fused_add_rms_norm(x, r, w, 1e-6)
    ln = ns.layer_norm(x, w, b, 1e-5)
    cf = ns.layer_norm_channels_first(img, wc, bc, 1e-6)
    gated, mean, rstd = ns.norm_gated(x, w, b, z, 1e-6, 16, False, False)
    rg = ns.rmsnorm_fn(x, w, None, z, 1e-6, group_size=32)
    out = torch.empty_like(x)
    ns.rms_norm(x, w, out=out)
    xi, ri = x.clone(), r.clone()
    ns.fused_add_rms_norm(xi, ri, w, inplace=True)
    return a, g, y, s, ln, cf, gated, mean, rstd, rg, out, xi, ri


def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    args = (torch.randn(8, 64, dtype=torch.bfloat16), torch.randn(8, 64, dtype=torch.bfloat16),
            torch.randn(64, dtype=torch.bfloat16), torch.randn(64), torch.randn(8, 64, dtype=torch.bfloat16),
            torch.randn(2, 16, 4, 4, dtype=torch.bfloat16), torch.randn(16), torch.randn(16))
    eager = every_op(*args)
    compiled = torch.compile(every_op, fullgraph=True, dynamic=False)(*args)
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=0, atol=0)


def test_graph_holds_the_custom_ops():
    from torch.fx.experimental.proxy_tensor import make_fx

    x, w = torch.randn(4, 32), torch.randn(32)
    graph = make_fx(lambda x, w: ns.rms_norm(x, w) + ns.layer_norm(x, w, w))(x, w)
    targets = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
    assert "normswitch.rms_norm.default" in targets and "normswitch.layer_norm.default" in targets
