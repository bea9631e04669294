"""``RowLaunch`` (``kernels/triton/bound.py``) without a GPU: a fake kernel records what the
bound launch hands the ordinary launch and the compiled kernel's launcher."""
from __future__ import annotations

import torch

from normswitch.kernels.triton import bound


class _Compiled:
    function, packed_metadata = "fn", "meta"

    def __init__(self) -> None:
        self.runs: list[tuple] = []

    def _init_handles(self) -> None:
        pass

    def launch_metadata(self, grid, stream, *args):  # only called when a launch hook is set
        raise AssertionError("no hook is set")

    def run(self, *args) -> None:
        self.runs.append(args)


class _Kernel:
    arg_names = ["x", "y", "w", "M", "n_groups", "BLOCK_M", "PARAMS_FIRST"]

    def __init__(self) -> None:
        self.launches: list[tuple] = []
        self.made: list[_Compiled] = []

    def __getitem__(self, grid):
        def launch(*args, num_warps):
            self.launches.append((grid, args, num_warps))
            self.made.append(_Compiled())
            return self.made[-1]
        return launch


def _launch(monkeypatch, kernel):
    monkeypatch.setattr(bound, "_current_device", lambda: 0)
    monkeypatch.setattr(bound, "_raw_stream", lambda device: 1234)
    monkeypatch.setattr(bound, "_hooks", lambda: (None, None))
    x, y, w = torch.zeros(4, 8), torch.zeros(4, 8), torch.ones(8)
    rl = bound.RowLaunch(kernel, [x, y, w, 4, 2, 4, True], (x, y, w), num_warps=4, params_first_max=2)
    return rl, (x, y, w)


def test_first_call_launches_tensors_later_calls_pass_addresses(monkeypatch):
    kernel = _Kernel()
    rl, (x, y, w) = _launch(monkeypatch, kernel)
    assert rl(4, (x, y, w))  # 4 rows x 2 groups / 4 per program = 2 programs: PARAMS_FIRST
    grid, args, warps = kernel.launches[0]
    assert grid == (2,) and warps == 4 and args[0] is x and args[2] is w and args[6] is True
    assert rl(4, (x, y, w))
    run = kernel.made[0].runs[0]
    assert run[:7] == (2, 1, 1, 1234, "fn", "meta", None)
    assert list(run[9:]) == [x.data_ptr(), y.data_ptr(), w.data_ptr(), 4, 2, 4, True]


def test_grid_past_the_switch_compiles_the_other_variant(monkeypatch):
    kernel = _Kernel()
    rl, (x, y, w) = _launch(monkeypatch, kernel)
    big_x, big_y = torch.zeros(16, 8), torch.zeros(16, 8)
    assert rl(16, (big_x, big_y, w))  # 8 programs > 2: PARAMS_FIRST false, a second compile
    assert kernel.launches[0][0] == (8,) and kernel.launches[0][1][6] is False
    assert rl(16, (big_x, big_y, w)) and kernel.made[0].runs[0][0] == 8


def test_unaligned_tensor_is_refused(monkeypatch):
    kernel = _Kernel()
    rl, (x, y, w) = _launch(monkeypatch, kernel)
    flat = torch.zeros(33)
    assert not rl(4, (flat[1:].view(4, 8), y, w))
    assert kernel.launches == []
